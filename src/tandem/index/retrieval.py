"""Hybrid retrieval on PostgreSQL: pgvector HNSW for the vector side, BM25 for keywords.

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
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from tandem.db.models import vector_literal
from tandem.index import bm25
from tandem.index.bm25_sql import chunk_score_join
from tandem.index.filters import ChunkFilter, FilterEstimates
from tandem.index.fusion import Candidate, Fusion, fuse
from tandem.index.pages import read_page
from tandem.index.protocol import IndexHit, IndexQuery, SearchMode
from tandem.index.stage_timings import Stage
from tandem.model_files import FloatArray

MAX_EF_SEARCH = 1000
OPENING_WEIGHT = 0.5  # w above; 0 ranks by each chunk's own cosine alone
# A grouped page short of documents asks the retrievers again for GROWTH times as many
# candidates, up to MAX_CANDIDATES each (PostgresRetrieval.search).
GROWTH = 4
MAX_CANDIDATES = 5000
# A round that lost its connection (the database restarted) runs again this many times.
DISCONNECT_RETRIES = 1


# The cosine of a chunk's document's opening chunk, `o`, joined by the unique
# (document_id, ordinal) key; NULL only if the opening chunk is gone.
OPENING_COSINE = "1 - (o.embedding <=> CAST(:v AS vector))"


HNSW_SETTINGS = (
    "SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true),"
    " set_config('hnsw.ef_search', :ef, true),"
    " set_config('enable_seqscan', 'off', true)"
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


class PostgresRetrieval:
    def __init__(
        self,
        fusion: Fusion,
        parameters: bm25.Bm25Parameters,
        opening_weight: float = OPENING_WEIGHT,
    ) -> None:
        self._fusion = fusion
        self._parameters = parameters
        self._opening_weight = opening_weight
        self._estimates = FilterEstimates()  # lives as long as the index: the lifespan's

    def search(self, sessions: sessionmaker[Session], query: IndexQuery) -> list[IndexHit]:
        """The page of the ranking at `query.offset`. Grouped by document, a pool of
        `candidates` per retriever may hold fewer documents than the page needs (one long
        document's chunks filling it): then the retrievers are asked again for GROWTH
        times as many, until the page is full, they run out, or MAX_CANDIDATES. Each round
        on connections of its own, none held in between (see `_hybrid`)."""
        if query.mode is SearchMode.KEYWORD or query.vector is not None or query.embed is None:
            return self._rounds(sessions, query, query.vector)
        # The query is embedded while the index connects (and with hybrid, starts on the
        # keywords): the vector is needed only for the HNSW scan.
        with ThreadPoolExecutor(1, thread_name_prefix="query-embedding") as embedding:
            return self._rounds(sessions, query, embedding.submit(query.embed))

    def _rounds(
        self,
        sessions: sessionmaker[Session],
        query: IndexQuery,
        vector: FloatArray | PendingVector | None,
    ) -> list[IndexHit]:
        chunk_filter = ChunkFilter.build(query.filters)
        candidates = query.candidates
        while True:
            asked = replace(query, candidates=candidates)
            pool, hits = self._round(sessions, asked, vector, chunk_filter)
            if len(hits) >= query.limit or not pool.full or candidates >= MAX_CANDIDATES:
                return hits
            candidates = min(MAX_CANDIDATES, candidates * GROWTH)
            vector = pool.vector  # resolved: not embedded again

    def _round(
        self,
        sessions: sessionmaker[Session],
        query: IndexQuery,
        vector: FloatArray | PendingVector | None,
        chunk_filter: ChunkFilter,
    ) -> tuple[Pool, list[IndexHit]]:
        """One round: the pool and its page. Search engines run without the pool's
        pre-ping (tandem.db.session.make_engine): a connection the database dropped fails
        here once, the pool discards it and its like, and the round runs again."""
        for attempt in range(DISCONNECT_RETRIES + 1):
            try:
                with sessions() as session:
                    pool = self._pool(sessions, session, query, vector, chunk_filter)
                    with query.timings.stage(Stage.PAGE):
                        hits = read_page(
                            session,
                            pool.ranked,
                            offset=query.offset,
                            limit=query.limit,
                            grouped=query.group_by_document,
                        )
                return pool, hits
            except DBAPIError as exc:
                if not exc.connection_invalidated or attempt == DISCONNECT_RETRIES:
                    raise
        raise AssertionError("the last attempt returns or raises")

    def _pool(
        self,
        sessions: sessionmaker[Session],
        session: Session,
        query: IndexQuery,
        pending: FloatArray | PendingVector | None,
        chunk_filter: ChunkFilter,
    ) -> Pool:
        if query.mode is SearchMode.HYBRID and pending is not None:
            return self._hybrid(sessions, session, query, pending, chunk_filter)
        timings = query.timings
        vector = None
        if query.mode is not SearchMode.KEYWORD and pending is not None:
            # Connected and set for HNSW while the query is still being embedded.
            self._connect(session, query, hnsw=True)
            vector = resolve(pending)
            if vector is None:  # embedding failed: BM25's plans, not the HNSW settings
                session.execute(text(RESET_HNSW_SETTINGS))
        else:
            self._connect(session, query, hnsw=False)
        if vector is None:  # keyword mode, or no query vector: keyword only
            with timings.stage(Stage.BM25):
                scores = self._keyword(session, query, chunk_filter)
            with timings.stage(Stage.FUSION):
                ranked = _by_score(scores, keyword=True)
            return Pool(ranked, len(scores) >= query.candidates, None)
        with timings.stage(Stage.HNSW):
            scores = self._nearest(session, query, vector, chunk_filter)[0]
        with timings.stage(Stage.FUSION):
            ranked = _by_score(scores)
        return Pool(ranked, len(scores) >= query.candidates, vector)

    def _hybrid(
        self,
        sessions: sessionmaker[Session],
        session: Session,
        query: IndexQuery,
        pending: FloatArray | PendingVector,
        chunk_filter: ChunkFilter,
    ) -> Pool:
        """Two connections at once. On a second one: the query's terms, then the keyword
        top k and their semantic scores. On this one, once the query vector and the terms
        are there: the HNSW top k with their semantic and BM25 scores in one statement."""
        # Safe on a small pool: this connection is taken only after the keyword side has
        # read the terms on its own, which then finishes without waiting for anything.
        analysed: Future[bm25.PreparedQuery] = Future()
        vector_scores: dict[int, float] = {}
        vector_bm25: dict[int, float] = {}
        with ThreadPoolExecutor(1, thread_name_prefix="bm25") as keyword_thread:
            keyword = keyword_thread.submit(
                self._keyword_side, sessions, query, pending, chunk_filter, analysed
            )
            # The terms first: then the keyword side holds its connection (see above).
            terms = analysed.result()
            self._connect(session, query, hnsw=True)
            vector = resolve(pending)
            if vector is not None:
                scorer = bm25.Bm25Scorer(session, terms, chunk_filter.sql, chunk_filter.params)
                with query.timings.stage(Stage.HNSW):
                    vector_scores, vector_bm25 = self._nearest(
                        session, query, vector, chunk_filter, scorer
                    )
            else:  # the page is read here, with the planner's usual choices
                session.execute(text(RESET_HNSW_SETTINGS))
            keyword_scores, keyword_semantic = keyword.result()
        # Either list as long as asked for: that retriever may have more.
        full = max(len(keyword_scores), len(vector_scores)) >= query.candidates
        with query.timings.stage(Stage.FUSION):
            if vector is None:  # the inference server could not embed the query
                return Pool(_by_score(keyword_scores, keyword=True), full, None)
            keyword_scores = vector_bm25 | keyword_scores
            vector_scores = keyword_semantic | vector_scores
            candidates = [
                Candidate(c, vector_scores.get(c), keyword_scores.get(c))
                for c in {**vector_scores, **keyword_scores}
            ]
            ranked = fuse(candidates, alpha=query.alpha, method=self._fusion)
        return Pool(ranked, full, vector)

    def _keyword_side(
        self,
        sessions: sessionmaker[Session],
        query: IndexQuery,
        pending: FloatArray | PendingVector,
        chunk_filter: ChunkFilter,
        analysed: Future[bm25.PreparedQuery],
    ) -> tuple[dict[int, float], dict[int, float]]:
        """On a connection of its own: (BM25 top k, their semantic scores: empty without
        a vector)."""
        with sessions() as session:
            with query.timings.stage(Stage.BM25):
                scores = self._keyword(session, query, chunk_filter, analysed)
            vector = resolve(pending)
            if vector is None:
                return scores, {}
            with query.timings.stage(Stage.COSINES):
                return scores, self._semantic_scores(session, vector, [*scores])

    def _keyword(
        self,
        session: Session,
        query: IndexQuery,
        chunk_filter: ChunkFilter,
        analysed: Future[bm25.PreparedQuery] | None = None,
    ) -> dict[int, float]:
        """The BM25 top k; `analysed` gets the query's terms as soon as they are read (or
        the error that prevented it)."""
        try:
            prepared = bm25.prepare(session, query.text, self._parameters)
        except BaseException as exc:  # re-raised: whoever waits must not wait forever
            if analysed is not None:
                analysed.set_exception(exc)
            raise
        if analysed is not None:
            analysed.set_result(prepared)
        scorer = bm25.Bm25Scorer(
            session, prepared, chunk_filter.sql, chunk_filter.params, estimates=self._estimates
        )
        return dict(scorer.top(query.candidates))

    def _connect(self, session: Session, query: IndexQuery, *, hnsw: bool) -> None:
        """This transaction's connection from the pool and, for an HNSW scan, its settings
        (`_nearest` runs with them): both before the query vector is needed, so that they
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
            session.execute(text(HNSW_SETTINGS), {"ef": str(ef_search)})

    def _nearest(
        self,
        session: Session,
        query: IndexQuery,
        vector: FloatArray,
        chunk_filter: ChunkFilter,
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
            text(
                f"SELECT n.id, n.cosine, {OPENING_COSINE}{keyword_column} FROM ("
                " SELECT c.id, c.document_id, 1 - (c.embedding <=> CAST(:v AS vector)) AS cosine"
                f" FROM chunks c{chunk_filter.where()}"
                " ORDER BY c.embedding <=> CAST(:v AS vector) LIMIT :k) AS n"
                f"{opening_join('n')}{keyword_join}"
            ),
            {
                **keyword_params,
                **chunk_filter.params,
                "v": vector_literal(vector),
                "k": query.candidates,
            },
        ).all()
        keyword = {} if scorer is None else {int(row[0]): float(row[3]) for row in rows}
        return self._blend(rows), keyword

    def _semantic_scores(
        self, session: Session, vector: FloatArray, chunk_ids: list[int]
    ) -> dict[int, float]:
        """Each chunk's semantic score (module docstring), in one round trip: its own
        cosine and its document's opening chunk's, by the (document_id, ordinal) key."""
        if not chunk_ids:
            return {}
        rows = session.execute(
            text(
                f"SELECT c.id, 1 - (c.embedding <=> CAST(:v AS vector)), {OPENING_COSINE}"
                f" FROM chunks c{opening_join('c')} WHERE c.id = ANY(:ids)"
            ),
            {"v": vector_literal(vector), "ids": list(dict.fromkeys(chunk_ids))},
        )
        return self._blend(rows)

    def _blend(self, rows: Iterable[Sequence[Any]]) -> dict[int, float]:
        """{chunk id: semantic score} from (chunk id, cosine, opening's cosine or None)."""
        weight = self._opening_weight
        return {
            int(row[0]): (1 - weight) * float(row[1])
            + weight * float(row[1] if row[2] is None else row[2])
            for row in rows
        }


def _by_score(scores: dict[int, float], *, keyword: bool = False) -> list[Candidate]:
    """One retriever's candidates, best first (ties by chunk id)."""
    ranked = [
        Candidate(c, None if keyword else s, s if keyword else None, score=s)
        for c, s in scores.items()
    ]
    ranked.sort(key=lambda c: (-c.score, c.key))
    return ranked
