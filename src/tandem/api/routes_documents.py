"""The document catalog: list, read and delete, each limited to what the caller may read."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from tandem.api.access import access_out, readers_of
from tandem.api.state import Ingesting, Searching, StateDep
from tandem.db import catalog
from tandem.db.models import Document
from tandem.db.replicas import ReadTarget
from tandem.wire.api import ChunkOut, DocumentDetail, DocumentOut, DocumentPage
from tandem.wire.errors import ApiError, error_responses

router = APIRouter(prefix="/api", tags=["documents"], responses=error_responses(401, 403, 422))
# Far beyond any catalog, and inside PostgreSQL's bigint.
MAX_OFFSET = 2**31 - 1


def _document_out(document: Document, names: dict[str, str]) -> DocumentOut:
    return DocumentOut(
        id=document.id,
        title=document.title,
        source=document.source,
        path=document.path,
        content_type=document.content_type,
        metadata=document.metadata_,
        chunk_count=document.chunk_count,
        size_bytes=document.size_bytes,
        created_at=document.created_at.isoformat(),
        updated_at=document.updated_at.isoformat(),
        access=access_out(document.readers, names),
    )


def _storable_id(document_id: str) -> bool:
    # No stored document id holds NUL (PostgreSQL text cannot): such an id is simply absent.
    return "\x00" not in document_id


def _not_found(document_id: str) -> ApiError:
    # The same answer whether it does not exist or the caller may not read it.
    return ApiError(404, f"no document {document_id!r}", "not_found")


@router.get("/documents", response_model=DocumentPage)
def list_documents(
    state: StateDep,
    caller: Searching,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> DocumentPage:
    def read(target: ReadTarget) -> DocumentPage:
        with target.sessions() as session:
            documents, total = catalog.list_documents(
                session, offset=offset, limit=limit, readers=caller.readers
            )
            names = readers_of(session, [d.readers for d in documents])
            return DocumentPage(
                items=[_document_out(d, names) for d in documents],
                total=total,
                offset=offset,
                limit=limit,
            )

    return state.reads.run(read)


@router.get(
    "/documents/{document_id:path}", response_model=DocumentDetail, responses=error_responses(404)
)
def get_document(document_id: str, state: StateDep, caller: Searching) -> DocumentDetail:
    if not _storable_id(document_id):
        raise _not_found(document_id)

    def read(target: ReadTarget) -> DocumentOut | None:
        with target.sessions() as session:
            document = catalog.get_document(session, document_id, caller.readers)
            if document is None:
                return None
            return _document_out(document, readers_of(session, [document.readers]))

    summary = state.reads.run(read)
    if summary is None:
        raise _not_found(document_id)
    chunks = [ChunkOut(ordinal=c.ordinal, text=c.text) for c in state.index.chunks(document_id)]
    return DocumentDetail(**summary.model_dump(), chunks=chunks)


@router.delete("/documents/{document_id:path}", status_code=204, responses=error_responses(404))
def delete_document(document_id: str, state: StateDep, caller: Ingesting) -> None:
    """Remove a document from the index: its uploader's, or an admin's to remove."""
    if not _storable_id(document_id):
        raise _not_found(document_id)
    with state.sessions() as session:
        document = catalog.get_document(session, document_id, caller.readers)
        others = document is not None and document.owner_id != caller.user_id
        if others and caller.readers is not None:
            raise ApiError(
                403, "only its uploader or an admin may delete this document", "forbidden"
            )
    # An admin also clears chunks a catalog row no longer names.
    visible = document is not None or caller.readers is None
    removed = state.index.delete_document(document_id) if visible else 0
    with state.sessions.begin() as session:
        existed = document is not None and catalog.delete_document(session, document_id)
    if not existed and not removed:
        raise _not_found(document_id)
