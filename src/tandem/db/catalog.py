"""The documents table: what is indexed, listed and deleted through the API."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from tandem.db.models import Chunk, Document


@dataclass(frozen=True, slots=True)
class DocumentInfo:
    id: str
    title: str
    source: str
    content_type: str
    metadata: dict[str, Any]
    content_hash: str
    size_bytes: int


def upsert_document(session: Session, info: DocumentInfo) -> None:
    values = {
        "id": info.id,
        "title": info.title,
        "source": info.source,
        "content_type": info.content_type,
        "metadata": info.metadata,
        "content_hash": info.content_hash,
        "size_bytes": info.size_bytes,
        "chunk_count": 0,
    }
    statement = insert(cast(Table, Document.__table__)).values(values)
    updated = {k: statement.excluded[k] for k in values if k not in ("id", "chunk_count")}
    session.execute(
        statement.on_conflict_do_update(
            index_elements=["id"], set_=updated | {"updated_at": func.now()}
        )
    )


def set_chunk_count(session: Session, document_id: str, count: int) -> None:
    document = session.get(Document, document_id)
    if document is not None:
        document.chunk_count = count


def list_documents(session: Session, *, offset: int, limit: int) -> tuple[list[Document], int]:
    total = session.execute(select(func.count()).select_from(Document)).scalar_one()
    rows = session.execute(
        select(Document)
        .order_by(Document.updated_at.desc(), Document.id)
        .offset(offset)
        .limit(limit)
    ).scalars()
    return list(rows), int(total)


def get_document(session: Session, document_id: str) -> Document | None:
    return session.get(Document, document_id)


def delete_document(session: Session, document_id: str) -> bool:
    document = session.get(Document, document_id)
    if document is None:
        return False
    session.delete(document)
    return True


def counts(session: Session) -> tuple[int, int]:
    documents = session.execute(select(func.count()).select_from(Document)).scalar_one()
    chunks = session.execute(select(func.count()).select_from(Chunk)).scalar_one()
    return int(documents), int(chunks)
