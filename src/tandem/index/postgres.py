"""The document index on PostgreSQL: chunks with pgvector embeddings and BM25 postings.

Writes in tandem.index.chunk_writes; retrieval (HNSW + BM25, fused) in
tandem.index.retrieval."""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from tandem.db.models import Chunk
from tandem.index.bm25 import Bm25Parameters
from tandem.index.chunk_writes import PostgresChunkWriter
from tandem.index.fusion import Fusion
from tandem.index.protocol import ChunkWriter, IndexedChunk, IndexHit, IndexQuery
from tandem.index.retrieval import OPENING_WEIGHT, PostgresRetrieval
from tandem.model_files import FloatArray


def stored_vectors(
    session: Session, document_ids: Collection[str]
) -> dict[str, dict[tuple[str, str], FloatArray]]:
    """Each document's stored vectors by the (title, text) they embed: a changed document
    re-embeds only the chunks whose text is new."""
    if not document_ids:
        return {}
    found: dict[str, dict[tuple[str, str], FloatArray]] = {}
    rows = session.execute(
        select(Chunk.document_id, Chunk.title, Chunk.text, Chunk.embedding).where(
            Chunk.document_id.in_(sorted(document_ids))
        )
    )
    for document_id, title, body, embedding in rows:
        found.setdefault(document_id, {})[(title, body)] = np.asarray(embedding, np.float32)
    return found


class PostgresIndex:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        fusion: Fusion = Fusion.LINEAR,
        bm25_parameters: Bm25Parameters | None = None,
        opening_weight: float = OPENING_WEIGHT,
    ) -> None:
        self._sessions = sessions
        self._writer = PostgresChunkWriter()
        self._retrieval = PostgresRetrieval(
            fusion, bm25_parameters or Bm25Parameters(), opening_weight
        )

    @property
    def writer(self) -> ChunkWriter:
        return self._writer

    def replace_document(self, document_id: str, chunks: Sequence[IndexedChunk]) -> None:
        with self._sessions.begin() as session:
            self._writer.replace_chunks(session, {document_id: chunks})

    def delete_document(self, document_id: str) -> int:
        with self._sessions.begin() as session:
            return self._writer.delete_documents(session, [document_id])

    def chunk_count(self, document_id: str | None = None) -> int:
        statement = select(func.count()).select_from(Chunk)
        if document_id is not None:
            statement = statement.where(Chunk.document_id == document_id)
        with self._sessions() as session:
            return int(session.execute(statement).scalar_one())

    def chunks(self, document_id: str) -> list[IndexHit]:
        statement = (
            select(
                Chunk.document_id, Chunk.ordinal, Chunk.title, Chunk.source, Chunk.path, Chunk.text
            )
            .where(Chunk.document_id == document_id)
            .order_by(Chunk.ordinal)
        )
        with self._sessions() as session:
            return [
                IndexHit(row[0], row[1], row[2], row[3], row[4], row[5], 0.0, None, None)
                for row in session.execute(statement)
            ]

    def search(self, query: IndexQuery) -> list[IndexHit]:
        return self._retrieval.search(self._sessions, query)
