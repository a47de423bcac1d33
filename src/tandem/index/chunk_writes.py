"""The only writer of `chunks` (and so, through its triggers, of the BM25 statistics):
every statement runs in the caller's session, inside the caller's transaction, so a
caller writes its catalog rows and the chunks together."""

from __future__ import annotations

import struct
from collections.abc import Collection, Mapping, Sequence

import numpy as np
import orjson
import psycopg
from sqlalchemy import delete, text
from sqlalchemy.orm import Session

from tandem.db.models import Chunk, vector_literal
from tandem.index.protocol import IndexedChunk
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

# Serializes concurrent writes of one document (a retried task racing its predecessor, a
# reindex batch) so their statements cannot interleave; sorted hashes: no deadlock.
_DOCUMENT_LOCKS = (
    "SELECT pg_advisory_xact_lock(h) FROM (SELECT hashtextextended(id, 0) AS h "
    "FROM unnest(CAST(:ids AS text[])) AS id ORDER BY h) AS locks"
)


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


class PostgresChunkWriter:
    """tandem.index.protocol.ChunkWriter on PostgreSQL."""

    def replace_chunks(
        self,
        session: Session,
        documents: Mapping[str, Sequence[IndexedChunk]],
        existing: Collection[str] | None = None,
    ) -> None:
        """One DELETE and one COPY for all the documents: the statement-level triggers on
        `chunks` (BM25 statistics) run once per statement, not once per row."""
        ids = sorted(documents)
        if not ids:
            return
        session.execute(text(_DOCUMENT_LOCKS), {"ids": ids})
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

    def delete_documents(self, session: Session, document_ids: Collection[str]) -> int:
        if not document_ids:
            return 0
        ids = sorted(document_ids)
        session.execute(text(_DOCUMENT_LOCKS), {"ids": ids})
        result = session.execute(delete(Chunk).where(Chunk.document_id.in_(ids)))
        return int(result.rowcount)  # type: ignore[attr-defined]

    def set_document_readers(self, session: Session, readers: Mapping[str, Sequence[str]]) -> None:
        """The text is as it was, so the BM25 triggers skip these updates."""
        for document_id, tokens in sorted(readers.items()):
            session.execute(
                text("UPDATE chunks SET readers = :r WHERE document_id = :id"),
                {"r": list(tokens), "id": document_id},
            )

    def set_source_readers(self, session: Session, source: str, readers: Sequence[str]) -> None:
        session.execute(
            text("UPDATE chunks SET readers = :r WHERE source = :name"),
            {"r": list(readers), "name": source},
        )

    def replace_embeddings(
        self,
        session: Session,
        document_ids: Sequence[str],
        vectors: Mapping[int, FloatArray],
    ) -> int:
        """One statement: the statement-level BM25 triggers run once per batch (and skip
        it: no text changes). Takes the documents' locks, as replace_chunks does."""
        if not vectors:
            return 0
        session.execute(text(_DOCUMENT_LOCKS), {"ids": list(document_ids)})
        ids = sorted(vectors)
        result = session.execute(
            text(
                "UPDATE chunks SET embedding = CAST(v.embedding AS vector) FROM"
                " unnest(CAST(:ids AS bigint[]), CAST(:vectors AS text[])) AS v(id, embedding)"
                " WHERE chunks.id = v.id"
            ),
            {"ids": ids, "vectors": [vector_literal(vectors[i]) for i in ids]},
        )
        return int(result.rowcount)  # type: ignore[attr-defined]
