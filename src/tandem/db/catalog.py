"""The documents table: what is indexed, listed and deleted through the API."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from tandem.db.models import PUBLIC, UPLOAD_SOURCE, Chunk, Document


@dataclass(frozen=True, slots=True)
class DocumentInfo:
    id: str
    title: str
    path: str
    content_type: str
    metadata: dict[str, Any]
    content_hash: str
    size_bytes: int
    chunk_count: int = 0
    source: str = UPLOAD_SOURCE
    readers: tuple[str, ...] = (PUBLIC,)
    owner_id: int | None = None


def upsert_document(session: Session, info: DocumentInfo) -> None:
    upsert_documents(session, [info])


_UPSERT = text(
    """
    INSERT INTO documents
        (id, title, source, path, content_type, metadata, content_hash, size_bytes, chunk_count,
         readers, owner_id)
    SELECT u.id, u.title, u.source, u.path, u.content_type, u.metadata, u.hash, u.size,
           u.chunk_count, CAST(u.readers AS text[]), u.owner_id
    FROM unnest(
        CAST(:ids AS text[]), CAST(:titles AS text[]), CAST(:sources AS text[]),
        CAST(:paths AS text[]),
        CAST(:content_types AS text[]), CAST(CAST(:metadata AS text[]) AS jsonb[]),
        CAST(:hashes AS text[]), CAST(:sizes AS bigint[]), CAST(:chunk_counts AS integer[]),
        CAST(:readers AS text[]), CAST(:owners AS integer[]))
        AS u(id, title, source, path, content_type, metadata, hash, size, chunk_count,
             readers, owner_id)
    ON CONFLICT (id) DO UPDATE SET
        title = excluded.title, path = excluded.path,
        content_type = excluded.content_type, metadata = excluded.metadata,
        content_hash = excluded.content_hash, size_bytes = excluded.size_bytes,
        chunk_count = excluded.chunk_count, readers = excluded.readers,
        owner_id = coalesce(excluded.owner_id, documents.owner_id), updated_at = now()
    -- An id another source holds is not taken over: that row is not returned.
    WHERE documents.source = excluded.source
    RETURNING id, xmax <> 0 AS existed
    """
)


@dataclass(frozen=True, slots=True)
class Upserted:
    written: set[str]  # the ids inserted or updated
    existed: set[str]  # of those, the ones that existed (whose old chunks go)


def upsert_documents(session: Session, infos: Sequence[DocumentInfo]) -> Upserted:
    """Insert or update catalog rows in one statement (of one fixed text, whatever the
    count). An id that another source's document holds is not written. The ids must be
    distinct; sort them, so concurrent writers lock rows in one order."""
    if not infos:
        return Upserted(set(), set())
    rows = session.execute(
        _UPSERT,
        {
            "ids": [i.id for i in infos],
            "titles": [i.title for i in infos],
            "sources": [i.source for i in infos],
            "paths": [i.path for i in infos],
            "content_types": [i.content_type for i in infos],
            "metadata": [orjson.dumps(i.metadata).decode() for i in infos],
            "hashes": [i.content_hash for i in infos],
            "sizes": [i.size_bytes for i in infos],
            "chunk_counts": [i.chunk_count for i in infos],
            # Each array as its text form: unnest cannot take an array of arrays apart.
            "readers": [_array_literal(i.readers) for i in infos],
            "owners": [i.owner_id for i in infos],
        },
    )
    # xmax is 0 on a freshly inserted row version and set on an updated one.
    written = [(str(row.id), bool(row.existed)) for row in rows]
    return Upserted({i for i, _ in written}, {i for i, existed in written if existed})


def _array_literal(values: Sequence[str]) -> str:
    """PostgreSQL's text form of a text[] (every element quoted)."""
    quoted = ('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values)
    return "{" + ",".join(quoted) + "}"


@dataclass(frozen=True, slots=True)
class Indexed:
    """What the catalog holds of a document: enough to tell whether it changed."""

    source: str
    content_hash: str
    chunk_count: int
    readers: tuple[str, ...]


def indexed(session: Session, ids: Sequence[str]) -> dict[str, Indexed]:
    if not ids:
        return {}
    rows = session.execute(
        select(
            Document.id,
            Document.source,
            Document.content_hash,
            Document.chunk_count,
            Document.readers,
        ).where(Document.id.in_(list(ids)))
    )
    return {str(r[0]): Indexed(str(r[1]), str(r[2]), int(r[3]), tuple(r[4])) for r in rows}


def set_readers(session: Session, readers: dict[str, tuple[str, ...]]) -> None:
    """New readers for documents (their chunks: the index's ChunkWriter.set_document_readers)."""
    for document_id, tokens in sorted(readers.items()):
        session.execute(
            text("UPDATE documents SET readers = :r, updated_at = now() WHERE id = :id"),
            {"r": list(tokens), "id": document_id},
        )


def embedding_dimensions(session: Session) -> int:
    """The size of the index's vector column, as the migrations created it."""
    size = session.execute(
        text(
            "SELECT atttypmod FROM pg_attribute "
            "WHERE attrelid = 'chunks'::regclass AND attname = 'embedding'"
        )
    ).scalar_one()
    return int(size)


def _readable(readers: Sequence[str] | None) -> list[Any]:
    """WHERE clauses: only documents one of `readers` may read (None: all of them)."""
    if readers is None:
        return []
    return [Document.readers.overlap(list(readers))]


def list_documents(
    session: Session, *, offset: int, limit: int, readers: Sequence[str] | None = None
) -> tuple[list[Document], int]:
    where = _readable(readers)
    total = session.execute(select(func.count()).select_from(Document).where(*where)).scalar_one()
    rows = session.execute(
        select(Document)
        .where(*where)
        .order_by(Document.updated_at.desc(), Document.id)
        .offset(offset)
        .limit(limit)
    ).scalars()
    return list(rows), int(total)


def get_document(
    session: Session, document_id: str, readers: Sequence[str] | None = None
) -> Document | None:
    """The document, if one of `readers` may read it (None: any); a document the caller
    may not read is absent, as if it did not exist."""
    return session.execute(
        select(Document).where(Document.id == document_id, *_readable(readers))
    ).scalar_one_or_none()


def delete_document(session: Session, document_id: str) -> bool:
    """Delete a document; a synced source forgets having seen its path, so the next sync
    brings it back while its file or page still exists."""
    document = session.get(Document, document_id)
    if document is None:
        return False
    session.execute(
        text("DELETE FROM source_entries WHERE source = :source AND document_id = :id"),
        {"source": document.source, "id": document_id},
    )
    session.delete(document)
    return True


def counts(session: Session) -> tuple[int, int]:
    documents = session.execute(select(func.count()).select_from(Document)).scalar_one()
    chunks = session.execute(select(func.count()).select_from(Chunk)).scalar_one()
    return int(documents), int(chunks)
