"""Hybrid retrieval's SQL on PostgreSQL: pgvector HNSW for the vector side, BM25 for
keywords; `PostgresIndex.search` (tandem.index.postgres) runs the rounds that use it.

Each retriever returns its top candidates by chunk id; in hybrid mode every candidate then
gets both scores (the keyword candidates their cosine, the vector candidates their exact
BM25), so fusion compares like with like instead of treating "not in the other top k" as
zero. Rows (text, title, ...) are read only for the page returned (tandem.index.pages:
one hit per document, its best chunk, unless asked for every chunk). Filters narrow both
retrievers inside their SQL (tandem.index.filters).

A chunk's semantic score blends its own cosine with the cosine of its document's opening
chunk (ordinal 0: the title and the first lines, which say what the document is about):
``(1 - w) * cos(chunk) + w * cos(opening)``. A passage deep in a long document is then
judged in the context of its document as well (the "first passage" and "max passage"
evidence of passage-level ranking, combined). For single-chunk documents nothing changes.
Measured in benchmarks/ranking_quality.py (README: ranking).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from sqlalchemy.orm import Session

from tandem.db.statements import statement
from tandem.db.vector_param import VectorParam
from tandem.index import bm25
from tandem.index.bm25_sql import chunk_score_join
from tandem.index.filters import ChunkFilter
from tandem.index.fusion import Candidate
from tandem.index.protocol import IndexQuery
from tandem.index.stage_timings import Stage
from tandem.model_files import FloatArray

MAX_EF_SEARCH = 1000
OPENING_WEIGHT = 0.5  # w above; 0 ranks by each chunk's own cosine alone


# The cosine of a chunk's document's opening chunk, `o`, joined by the unique
# (document_id, ordinal) key; NULL only if the opening chunk is gone.
OPENING_COSINE = "1 - (o.embedding <=> CAST(:v AS vector))"


HNSW_SETTINGS = (
    "SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true),"
    " set_config('hnsw.ef_search', :ef, true),"
    " set_config('enable_seqscan', 'off', true),"
    " set_config('plan_cache_mode', 'force_generic_plan', true)"
)
RESET_HNSW_SETTINGS = "SELECT set_config('enable_seqscan', 'on', true)"


def opening_join(chunk_alias: str) -> str:
    return f" LEFT JOIN chunks o ON o.document_id = {chunk_alias}.document_id AND o.ordinal = 0"


@dataclass(frozen=True, slots=True)
class Pool:
    """The fused candidates of one round, best first; `full`: some retriever returned as
    many as asked for (it may have more); `vector`: the query vector, resolved."""

    ranked: list[Candidate]
    full: bool
    vector: FloatArray | None


class PendingVector(Protocol):
    """The query vector still being computed (a `Future` of `IndexQuery.embed`), which the
    keyword work overlaps; resolves to None when the query could not be embedded."""

    def result(self, timeout: float | None = None) -> FloatArray | None: ...


def resolve(vector: FloatArray | PendingVector | None) -> FloatArray | None:
    if vector is None or isinstance(vector, np.ndarray):
        return vector
    return vector.result()


def connect(session: Session, query: IndexQuery, *, hnsw: bool) -> None:
    """This transaction's connection from the pool and, for an HNSW scan, its settings
    (`nearest` runs with them): both before the query vector is needed, so that they
    overlap the query's embedding."""
    with query.timings.stage(Stage.CONNECT):
        if not hnsw:
            session.connection()
            return
        # Filtered HNSW scans keep looking until enough rows pass the filter. On small
        # tables the planner prefers a sequential scan that reads every vector out of
        # line (TOAST): several times slower than the index. All three for this
        # transaction only, set in one round trip.
        # Twice the candidates asked for: on the labelled sets ef_search = candidates
        # lost about 2% of exact search's MRR@10.
        ef_search = max(40, min(MAX_EF_SEARCH, 2 * query.candidates))
        session.execute(statement(HNSW_SETTINGS), {"ef": str(ef_search)})


def nearest(
    session: Session,
    query: IndexQuery,
    vector: FloatArray,
    chunk_filter: ChunkFilter,
    opening_weight: float,
    scorer: bm25.Bm25Scorer | None = None,
) -> tuple[dict[int, float], dict[int, float]]:
    """The HNSW top k by each chunk's own cosine, with their semantic scores (module
    docstring), and with a `scorer` their exact BM25 too: all in one statement."""
    keyword_column, keyword_join, keyword_params = ", NULL", "", {}
    if scorer is not None:
        keyword_column = ", COALESCE(bm25.score, 0)"
        keyword_join = chunk_score_join("n.id")
        keyword_params = scorer.score_parameters()
    rows = session.execute(
        statement(
            f"SELECT n.id, n.cosine, {OPENING_COSINE}{keyword_column} FROM ("
            " SELECT c.id, c.document_id, 1 - (c.embedding <=> CAST(:v AS vector)) AS cosine"
            f" FROM chunks c{chunk_filter.where()}"
            " ORDER BY c.embedding <=> CAST(:v AS vector) LIMIT :k) AS n"
            f"{opening_join('n')}{keyword_join}"
        ),
        {
            **keyword_params,
            **chunk_filter.params,
            "v": VectorParam(vector),
            "k": query.candidates,
        },
    ).all()
    keyword = {} if scorer is None else {int(row[0]): float(row[3]) for row in rows}
    return _blend(rows, opening_weight), keyword


def semantic_scores(
    session: Session, vector: FloatArray, chunk_ids: list[int], opening_weight: float
) -> dict[int, float]:
    """Each chunk's semantic score (module docstring), in one round trip: its own
    cosine and its document's opening chunk's, by the (document_id, ordinal) key."""
    if not chunk_ids:
        return {}
    rows = session.execute(
        statement(
            f"SELECT c.id, 1 - (c.embedding <=> CAST(:v AS vector)), {OPENING_COSINE}"
            f" FROM chunks c{opening_join('c')} WHERE c.id = ANY(:ids)"
        ),
        {"v": VectorParam(vector), "ids": list(dict.fromkeys(chunk_ids))},
    )
    return _blend(rows, opening_weight)


def _blend(rows: Iterable[Sequence[Any]], weight: float) -> dict[int, float]:
    """{chunk id: semantic score} from (chunk id, cosine, opening's cosine or None)."""
    return {
        int(row[0]): (1 - weight) * float(row[1])
        + weight * float(row[1] if row[2] is None else row[2])
        for row in rows
    }


def by_score(scores: dict[int, float], *, keyword: bool = False) -> list[Candidate]:
    """One retriever's candidates, best first (ties by chunk id)."""
    ranked = [
        Candidate(c, None if keyword else s, s if keyword else None, score=s)
        for c, s in scores.items()
    ]
    ranked.sort(key=lambda c: (-c.score, c.key))
    return ranked
