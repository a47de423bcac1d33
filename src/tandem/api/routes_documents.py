"""Upload, batch ingest, index attempts, and the document catalog."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, UploadFile
from kombu.exceptions import OperationalError

from tandem.api.state import Authorized, StateDep
from tandem.api_schemas import (
    AttemptItemOut,
    AttemptOut,
    BatchRequest,
    ChunkOut,
    DocumentDetail,
    DocumentOut,
    DocumentPage,
    IngestResponse,
    QueuedDocument,
)
from tandem.db import attempts, catalog
from tandem.db.models import UPLOAD_SOURCE, AttemptStatus, Document
from tandem.db.sources import InvalidPath, clean_path, document_id
from tandem.documents import UnsupportedFileType, detect_content_type
from tandem.http_errors import ApiError, error_responses
from tandem.work_queue import enqueue_items

log = logging.getLogger(__name__)
router = APIRouter(
    prefix="/api",
    tags=["documents"],
    dependencies=[Authorized],
    responses=error_responses(401, 422),
)
# Far beyond any catalog, and inside PostgreSQL's bigint.
MAX_OFFSET = 2**31 - 1


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _document_out(document: Document) -> DocumentOut:
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
    )


def _upload_path(raw: str | None) -> str:
    """The uploaded file's path as given (`tandem ingest` sends it relative to the folder
    it was given, so `alpha/README.md` and `beta/README.md` stay two documents)."""
    if not (raw or "").strip():
        raise ApiError(422, "every uploaded file needs a filename", "validation_error")
    try:
        return clean_path(raw or "")
    except InvalidPath as exc:
        raise ApiError(422, f"files: {exc}", "validation_error") from exc


def _storable_id(document_id: str) -> bool:
    # No stored document id holds NUL (PostgreSQL text cannot): such an id is simply absent.
    return "\x00" not in document_id


def _queue(state: StateDep, new_items: list[attempts.NewItem], failed: dict[int, str]) -> str:
    with state.sessions.begin() as session:
        attempt, item_ids = attempts.create_attempt(session, new_items)
        attempt_id = attempt.id
    for position, error in failed.items():
        attempts.finish_item(state.sessions, item_ids[position], error=error)
    queued = [item_id for pos, item_id in enumerate(item_ids) if pos not in failed]
    try:
        enqueue_items(state.queue, queued, state.settings.task_expiry_seconds)
    except OperationalError as exc:
        # The upload is stored: workers re-send unfinished items once the queue is back.
        log.error("enqueue_failed attempt=%s error=%s", attempt_id, exc)
    return str(attempt_id)


@router.post(
    "/documents",
    response_model=IngestResponse,
    status_code=202,
    responses=error_responses(400, 413),
)
def upload_documents(files: list[UploadFile], state: StateDep) -> IngestResponse:
    """Upload one or many files; each is parsed, chunked and indexed in the background."""
    limit = state.settings.max_file_bytes
    if len(files) > state.settings.max_files_per_upload:
        raise ApiError(
            413, f"at most {state.settings.max_files_per_upload} files per upload", "too_many_files"
        )
    new_items: list[attempts.NewItem] = []
    failed: dict[int, str] = {}
    for position, upload in enumerate(files):
        filename = _upload_path(upload.filename)
        data = upload.file.read(limit + 1)
        try:
            detect_content_type(filename, upload.content_type)
        except UnsupportedFileType as exc:
            failed[position] = str(exc)
        if len(data) > limit:
            failed[position] = f"{filename}: file exceeds the {limit}-byte limit"
            data = b""
        new_items.append(
            attempts.NewItem(
                document_id=document_id(UPLOAD_SOURCE, filename),
                filename=filename,
                payload=data,
                content_type=upload.content_type,
            )
        )
    attempt_id = _queue(state, new_items, failed)
    return IngestResponse(
        attempt_id=attempt_id,
        documents=[
            QueuedDocument(document_id=i.document_id, filename=i.filename) for i in new_items
        ],
    )


@router.post(
    "/documents/batch",
    response_model=IngestResponse,
    status_code=202,
    responses=error_responses(400, 413),
)
def ingest_batch(body: BatchRequest, state: StateDep) -> IngestResponse:
    """Index documents given as JSON (id, title, text, metadata)."""
    ids = [d.id for d in body.documents]
    if len(set(ids)) != len(ids):
        raise ApiError(422, "document ids in one batch must be unique", "validation_error")
    new_items = [
        attempts.NewItem(
            document_id=d.id,
            filename=d.path or d.id,
            payload=d.text.encode(),
            content_type="text/plain",
            title=d.title,
            metadata=dict(d.metadata),
        )
        for d in body.documents
    ]
    attempt_id = _queue(state, new_items, {})
    return IngestResponse(
        attempt_id=attempt_id,
        documents=[
            QueuedDocument(document_id=i.document_id, filename=i.filename) for i in new_items
        ],
    )


@router.get(
    "/index-attempts/{attempt_id}", response_model=AttemptOut, responses=error_responses(404)
)
def get_attempt(attempt_id: uuid.UUID, state: StateDep) -> AttemptOut:
    with state.sessions() as session:
        attempt = attempts.get_attempt(session, attempt_id)
        if attempt is None:
            raise ApiError(404, f"no index attempt {attempt_id}", "not_found")
        items = [
            AttemptItemOut(
                position=i.position,
                document_id=i.document_id,
                filename=i.filename,
                status=i.status.value,
                error=i.error,
                chunk_count=i.chunk_count,
                outcome=i.outcome,
                embedded_chunks=i.embedded_chunks,
            )
            for i in attempt.items
        ]
        finished = (AttemptStatus.SUCCEEDED.value, AttemptStatus.FAILED.value)
        return AttemptOut(
            id=str(attempt.id),
            status=attempt.status.value,
            error=attempt.error,
            created_at=attempt.created_at.isoformat(),
            started_at=_iso(attempt.started_at),
            finished_at=_iso(attempt.finished_at),
            total=len(items),
            done=sum(i.status in finished for i in items),
            failed=sum(i.status == AttemptStatus.FAILED.value for i in items),
            items=items,
        )


@router.get("/documents", response_model=DocumentPage)
def list_documents(
    state: StateDep,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> DocumentPage:
    with state.sessions() as session:
        documents, total = catalog.list_documents(session, offset=offset, limit=limit)
        return DocumentPage(
            items=[_document_out(d) for d in documents], total=total, offset=offset, limit=limit
        )


@router.get(
    "/documents/{document_id:path}", response_model=DocumentDetail, responses=error_responses(404)
)
def get_document(document_id: str, state: StateDep) -> DocumentDetail:
    if not _storable_id(document_id):
        raise ApiError(404, f"no document {document_id!r}", "not_found")
    with state.sessions() as session:
        document = catalog.get_document(session, document_id)
        if document is None:
            raise ApiError(404, f"no document {document_id!r}", "not_found")
        summary = _document_out(document)
    chunks = [ChunkOut(ordinal=c.ordinal, text=c.text) for c in state.index.chunks(document_id)]
    return DocumentDetail(**summary.model_dump(), chunks=chunks)


@router.delete("/documents/{document_id:path}", status_code=204, responses=error_responses(404))
def delete_document(document_id: str, state: StateDep) -> None:
    if not _storable_id(document_id):
        raise ApiError(404, f"no document {document_id!r}", "not_found")
    removed = state.index.delete_document(document_id)
    with state.sessions.begin() as session:
        existed = catalog.delete_document(session, document_id)
    if not existed and not removed:
        raise ApiError(404, f"no document {document_id!r}", "not_found")
