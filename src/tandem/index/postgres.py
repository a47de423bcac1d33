"""The document index on PostgreSQL: chunks with pgvector embeddings and BM25 postings.

Writes here; retrieval (HNSW + BM25, fused) in tandem.index.retrieval."""

from __future__ import annotations

import struct
from collections.abc import Collection, Mapping, Sequence

import numpy as np
import orjson
import psycopg
from sqlalchemy import delete, func, select, text
from sqlalchemy.orm import Session, sessionmaker

from tandem.db.models import Chunk
from tandem.index.bm25 import Bm25Parameters
from tandem.index.fusion import Fusion
from tandem.index.protocol import IndexedChunk, IndexHit, IndexQuery
from tandem.index.retrieval import OPENING_WEIGHT, PostgresRetrieval
from tandem.model_files import FloatArray

CHUNK_COLUMNS = (
    "document_id",
    "ordinal",
    "title",
    "source",
    "path",
    "content_type",
    "metadata",
    "text",
    "token_count",
    "embedding",
    "readers",
)


# PostgreSQL's binary COPY format: a signature, flags and header extension, then per row
# a field count and length-prefixed fields, then -1. Much cheaper than formatting each
# vector's 384 floats as text.
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_COPY_TRAILER = struct.pack(">h", -1)
_JSONB_VERSION = b"\x01"


_TEXT_OID = 25


def _field(value: bytes) -> bytes:
    return struct.pack(">i", len(value)) + value


def _text_array(values: Sequence[str]) -> bytes:
    """A one-dimensional text[] in COPY's binary form: dimensions, no NULLs, element type,
    length and lower bound, then each element length-prefixed."""
    header = struct.pack(">iiiii", 1, 0, _TEXT_OID, len(values), 1)
    return header + b"".join(_field(v.encode()) for v in values)


def _binary_row(document_id: str, chunk: IndexedChunk) -> bytes:
    vector = np.asarray(chunk.embedding, dtype=">f4")
    fields = (
        document_id.encode(),
        struct.pack(">i", chunk.ordinal),
        chunk.title.encode(),
        chunk.source.encode(),
        chunk.path.encode(),
        chunk.content_type.encode(),
        _JSONB_VERSION + orjson.dumps(chunk.metadata),
        chunk.text.encode(),
        struct.pack(">i", chunk.token_count),
        struct.pack(">HH", vector.shape[0], 0) + vector.tobytes(),  # pgvector's binary form
        _text_array(chunk.readers),
    )
    return struct.pack(">h", len(fields)) + b"".join(_field(f) for f in fields)


def replace_chunks(
    session: Session,
    documents: Mapping[str, Sequence[IndexedChunk]],
    existing: Collection[str] | None = None,
) -> None:
    """Make each document's chunks exactly `documents[id]`, inside the caller's transaction
    (so a caller can write the catalogue row and the chunks together). `existing`: the ids
    that may have chunks already (None: any may); a new document's delete is skipped.

    One DELETE and one COPY for all the documents: the statement-level triggers on `chunks`
    (BM25 statistics) run once per statement, not once per row."""
    ids = sorted(documents)
    if not ids:
        return
    # Serialize concurrent re-indexing of one document (a retried task racing its
    # predecessor) so the delete + insert pairs cannot interleave; sorted: no deadlock.
    session.execute(
        text(
            "SELECT pg_advisory_xact_lock(h) FROM (SELECT hashtextextended(id, 0) AS h "
            "FROM unnest(CAST(:ids AS text[])) AS id ORDER BY h) AS locks"
        ),
        {"ids": ids},
    )
    stale = ids if existing is None else sorted(set(existing) & set(ids))
    if stale:
        session.execute(delete(Chunk).where(Chunk.document_id.in_(stale)))
    rows = [_binary_row(d, c) for d in ids for c in documents[d]]
    if not rows:
        return
    driver = session.connection().connection.driver_connection
    assert isinstance(driver, psycopg.Connection)
    statement = f"COPY chunks ({', '.join(CHUNK_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
    with driver.cursor() as cursor, cursor.copy(statement) as copy:
        copy.write(b"".join([_COPY_HEADER, *rows, _COPY_TRAILER]))


def set_readers(session: Session, readers: Mapping[str, Sequence[str]]) -> None:
    """New readers for documents' chunks, in the caller's transaction; the text is as it
    was, so the BM25 triggers skip these updates."""
    for document_id, tokens in sorted(readers.items()):
        session.execute(
            text("UPDATE chunks SET readers = :r WHERE document_id = :id"),
            {"r": list(tokens), "id": document_id},
        )


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
        self._retrieval = PostgresRetrieval(
            fusion, bm25_parameters or Bm25Parameters(), opening_weight
        )

    def replace_document(self, document_id: str, chunks: Sequence[IndexedChunk]) -> None:
        with self._sessions.begin() as session:
            replace_chunks(session, {document_id: chunks})

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
