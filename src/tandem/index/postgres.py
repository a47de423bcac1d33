"""The document index on PostgreSQL: pgvector HNSW (cosine) + tsvector/GIN, fused in Python."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    Text,
    cast,
    delete,
    func,
    insert,
    literal,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import TSQUERY
from sqlalchemy.orm import Session, sessionmaker

from tandem.db.models import TEXT_SEARCH_CONFIG, Chunk
from tandem.index.fusion import Candidate, Fusion, fuse
from tandem.index.protocol import (
    IndexedChunk,
    IndexHit,
    IndexQuery,
    SearchFilters,
    SearchMode,
    Vector,
)

# ts_rank_cd normalization 32 maps a rank r to r / (r + 1): bounded, comparable per query.
RANK_NORMALIZATION = 32


def _or_query(query_text: str) -> ColumnElement[Any]:
    """Any query word may match (plainto_tsquery ANDs them; natural queries rarely match all).

    The rank still rewards chunks that match more of the words.
    """
    plain = func.plainto_tsquery(TEXT_SEARCH_CONFIG, query_text)
    return cast(func.replace(cast(plain, Text), "&", "|"), TSQUERY)


def _filters(filters: SearchFilters) -> list[ColumnElement[bool]]:
    clauses: list[ColumnElement[bool]] = []
    if filters.document_ids:
        clauses.append(Chunk.document_id.in_(list(filters.document_ids)))
    if filters.sources:
        clauses.append(Chunk.source.in_(list(filters.sources)))
    if filters.content_types:
        clauses.append(Chunk.content_type.in_(list(filters.content_types)))
    if filters.metadata:
        clauses.append(Chunk.metadata_.contains(filters.metadata))
    return clauses


class PostgresIndex:
    def __init__(self, sessions: sessionmaker[Session], fusion: Fusion = Fusion.LINEAR) -> None:
        self._sessions = sessions
        self._fusion = fusion

    def replace_document(self, document_id: str, chunks: Sequence[IndexedChunk]) -> None:
        rows = [
            {
                "document_id": document_id,
                "ordinal": c.ordinal,
                "title": c.title,
                "source": c.source,
                "content_type": c.content_type,
                "metadata_": c.metadata,
                "text": c.text,
                "token_count": c.token_count,
                "embedding": c.embedding,
            }
            for c in chunks
        ]
        with self._sessions.begin() as session:
            # Serialize concurrent re-indexing of one document (a retried task racing
            # its predecessor) so the delete + insert pairs cannot interleave.
            session.execute(
                text("SELECT pg_advisory_xact_lock(hashtextextended(:id, 0))"),
                {"id": document_id},
            )
            session.execute(delete(Chunk).where(Chunk.document_id == document_id))
            if rows:
                session.execute(insert(Chunk), rows)

    def delete_document(self, document_id: str) -> int:
        with self._sessions.begin() as session:
            result = session.execute(delete(Chunk).where(Chunk.document_id == document_id))
            return int(result.rowcount)  # type: ignore[attr-defined]

    def chunk_count(self, document_id: str | None = None) -> int:
        statement = select(func.count()).select_from(Chunk)
        if document_id is not None:
            statement = statement.where(Chunk.document_id == document_id)
        with self._sessions() as session:
            return int(session.execute(statement).scalar_one())

    def chunks(self, document_id: str) -> list[IndexHit]:
        statement = (
            select(Chunk.document_id, Chunk.ordinal, Chunk.title, Chunk.source, Chunk.text)
            .where(Chunk.document_id == document_id)
            .order_by(Chunk.ordinal)
        )
        with self._sessions() as session:
            return [
                IndexHit(row[0], row[1], row[2], row[3], row[4], 0.0, None, None)
                for row in session.execute(statement)
            ]

    def search(self, query: IndexQuery) -> list[IndexHit]:
        use_vector = query.vector is not None and query.mode is not SearchMode.KEYWORD
        use_keyword = query.mode is not SearchMode.SEMANTIC or query.vector is None
        vector_hits: list[Candidate] = []
        keyword_hits: list[Candidate] = []
        with self._sessions() as session:
            if use_vector and query.vector is not None:
                # Filtered HNSW scans keep looking until enough rows pass the filter.
                session.execute(text("SET LOCAL hnsw.iterative_scan = relaxed_order"))
                session.execute(
                    text(f"SET LOCAL hnsw.ef_search = {max(40, min(1000, query.candidates))}")
                )
                vector_hits = self._vector_candidates(session, query, query.vector)
            if use_keyword:
                keyword_hits = self._keyword_candidates(session, query)
        if not use_vector:
            ranked = [replace(c, score=c.keyword_score or 0.0) for c in keyword_hits]
        elif not use_keyword:
            ranked = [replace(c, score=c.vector_score or 0.0) for c in vector_hits]
        else:
            ranked = fuse(vector_hits, keyword_hits, alpha=query.alpha, method=self._fusion)
        return [self._hit(c) for c in ranked[: query.limit]]

    @staticmethod
    def _hit(candidate: Candidate) -> IndexHit:
        row = candidate.payload
        assert isinstance(row, tuple)
        return IndexHit(
            document_id=row[0],
            ordinal=row[1],
            title=row[2],
            source=row[3],
            text=row[4],
            score=candidate.score,
            vector_score=candidate.vector_score,
            keyword_score=candidate.keyword_score,
        )

    def _base(self, query: IndexQuery, *scores: ColumnElement[Any]) -> Select[Any]:
        columns = (Chunk.document_id, Chunk.ordinal, Chunk.title, Chunk.source, Chunk.text)
        return select(*columns, *scores).where(*_filters(query.filters))

    def _vector_candidates(
        self, session: Session, query: IndexQuery, vector: Vector
    ) -> list[Candidate]:
        distance = Chunk.embedding.cosine_distance(vector)
        tsquery = _or_query(query.text)
        keyword = func.ts_rank_cd(Chunk.tsv, tsquery, RANK_NORMALIZATION)
        statement = self._base(query, (1 - distance).label("v"), keyword.label("k"))
        statement = statement.order_by(distance).limit(query.candidates)
        return [
            Candidate((r[0], r[1]), float(r[5]), float(r[6]), tuple(r[:5]))
            for r in session.execute(statement)
        ]

    def _keyword_candidates(self, session: Session, query: IndexQuery) -> list[Candidate]:
        tsquery = _or_query(query.text)
        keyword = func.ts_rank_cd(Chunk.tsv, tsquery, RANK_NORMALIZATION)
        # Every match is ranked, but only the top candidates' vectors are read and scored:
        # an OR query can match a large share of the chunks (benchmarks/search_latency.py).
        columns = (Chunk.document_id, Chunk.ordinal, Chunk.title, Chunk.source, Chunk.text)
        top = (
            select(*columns, Chunk.id, Chunk.embedding, keyword.label("k"))
            .where(*_filters(query.filters), Chunk.tsv.bool_op("@@")(tsquery))
            .order_by(keyword.desc(), Chunk.id)
            .limit(query.candidates)
            .subquery()
        )
        vector_score: ColumnElement[Any] = (
            (1 - top.c.embedding.cosine_distance(query.vector))
            if query.vector is not None
            else literal(None)
        )
        outer = (top.c.document_id, top.c.ordinal, top.c.title, top.c.source, top.c.text)
        statement = select(*outer, vector_score.label("v"), top.c.k).order_by(
            top.c.k.desc(), top.c.id
        )
        return [
            Candidate(
                (r[0], r[1]),
                None if r[5] is None else float(r[5]),
                float(r[6]),
                tuple(r[:5]),
            )
            for r in session.execute(statement)
        ]
