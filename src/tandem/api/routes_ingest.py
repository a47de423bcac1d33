"""Upload and batch ingest, and the index attempts they create.

Documents are stored as an attempt's items, announced on the queue, and indexed by the
workers. Each carries who may read it (`access`, public when not given) and who sent it:
an ingest key may replace only documents nobody owns or it owns itself."""

from __future__ import annotations

import logging
import uuid
from typing import Annotated

from fastapi import APIRouter, Form, UploadFile
from kombu.exceptions import OperationalError
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from tandem.api.access import resolve
from tandem.api.state import Ingesting, Searching, StateDep
from tandem.db import attempts
from tandem.db.models import UPLOAD_SOURCE, AttemptStatus, Document, IndexAttemptItem
from tandem.db.principals import Caller
from tandem.db.sources import InvalidPath, clean_path, document_id
from tandem.documents.parsed import SNIFF_BYTES, UnsupportedFileType, screen_upload
from tandem.wire.api import (
    AccessIn,
    AttemptItemOut,
    AttemptOut,
    BatchRequest,
    IngestResponse,
    QueuedDocument,
    iso,
)
from tandem.wire.errors import ApiError, error_responses
from tandem.work_queue.producer import enqueue_items

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api", tags=["documents"], responses=error_responses(401, 403, 422))


def _upload_path(raw: str | None) -> str:
    """The uploaded file's path as given (`tandem ingest` sends it relative to the folder
    it was given, so `alpha/README.md` and `beta/README.md` stay two documents)."""
    if not (raw or "").strip():
        raise ApiError(422, "every uploaded file needs a filename", "validation_error")
    try:
        return clean_path(raw or "")
    except InvalidPath as exc:
        raise ApiError(422, f"files: {exc}", "validation_error") from exc


def _others(session: Session, ids: list[str], caller: Caller) -> set[str]:
    """Of `ids`, the documents another user uploaded, which this caller may not replace
    (an admin may replace anything)."""
    if caller.readers is None or not ids:
        return set()
    owned = select(Document.id).where(
        Document.id.in_(ids),
        Document.owner_id.is_not(None),
        Document.owner_id.is_distinct_from(caller.user_id),
    )
    # Another user's upload still waiting to be indexed counts as theirs already.
    waiting = select(IndexAttemptItem.document_id).where(
        IndexAttemptItem.document_id.in_(ids),
        IndexAttemptItem.status.in_((AttemptStatus.QUEUED, AttemptStatus.RUNNING)),
        IndexAttemptItem.owner_id.is_not(None),
        IndexAttemptItem.owner_id.is_distinct_from(caller.user_id),
    )
    return set(session.execute(owned.union(waiting)).scalars())


def _queue(state: StateDep, new_items: list[attempts.ItemToQueue], failed: dict[int, str]) -> str:
    with state.sessions.begin() as session:
        attempt, item_ids = attempts.create_attempt(session, new_items)
        attempt_id = attempt.id
    for position, error in failed.items():
        attempts.finish_item(state.sessions, item_ids[position], error=error)
    queued = [item_id for pos, item_id in enumerate(item_ids) if pos not in failed]
    try:
        enqueue_items(state.celery, queued, state.settings.task_expiry_seconds)
    except OperationalError as exc:
        # The upload is stored: workers re-send unfinished items once the queue is back.
        log.error("enqueue_failed attempt=%s error=%s", attempt_id, exc)
    return str(attempt_id)


def _parse_access(raw: str | None) -> AccessIn | None:
    if raw is None:
        return None
    try:
        return AccessIn.model_validate_json(raw)
    except ValidationError as exc:
        detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ApiError(422, f"access: {detail}", "validation_error") from exc


def _response(attempt_id: str, items: list[attempts.ItemToQueue]) -> IngestResponse:
    return IngestResponse(
        attempt_id=attempt_id,
        documents=[QueuedDocument(document_id=i.document_id, filename=i.filename) for i in items],
    )


@router.post(
    "/documents",
    response_model=IngestResponse,
    status_code=202,
    responses=error_responses(400, 413),
)
def upload_documents(
    files: list[UploadFile],
    state: StateDep,
    caller: Ingesting,
    access: Annotated[
        str | None, Form(description='JSON: {"public": false, "users": [], "groups": []}')
    ] = None,
) -> IngestResponse:
    """Upload one or many files; each is parsed, chunked and indexed in the background."""
    limit = state.settings.max_file_bytes
    if len(files) > state.settings.max_files_per_upload:
        raise ApiError(
            413, f"at most {state.settings.max_files_per_upload} files per upload", "too_many_files"
        )
    given = _parse_access(access)
    paths = [_upload_path(upload.filename) for upload in files]
    ids = [document_id(UPLOAD_SOURCE, p) for p in paths]
    with state.sessions() as session:
        readers = resolve(session, given, caller.user_id)
        others = _others(session, ids, caller)
    new_items: list[attempts.ItemToQueue] = []
    failed: dict[int, str] = {}
    for position, (upload, path, doc_id) in enumerate(zip(files, paths, ids, strict=True)):
        data = upload.file.read(limit + 1)
        try:
            screen_upload(path, upload.content_type, data[:SNIFF_BYTES])
        except UnsupportedFileType as exc:
            failed[position] = str(exc)
        if len(data) > limit:
            failed[position] = f"{path}: file exceeds the {limit}-byte limit"
            data = b""
        if doc_id in others:
            failed[position] = f"{path}: another user's document of this path exists"
            data = b""
        new_items.append(
            attempts.ItemToQueue(
                document_id=doc_id,
                filename=path,
                payload=data,
                content_type=upload.content_type,
                readers=readers,
                owner_id=caller.user_id,
            )
        )
    return _response(_queue(state, new_items, failed), new_items)


@router.post(
    "/documents/batch",
    response_model=IngestResponse,
    status_code=202,
    responses=error_responses(400, 413),
)
def ingest_batch(body: BatchRequest, state: StateDep, caller: Ingesting) -> IngestResponse:
    """Index documents given as JSON (id, title, text, path, metadata, access)."""
    ids = [d.id for d in body.documents]
    if len(set(ids)) != len(ids):
        raise ApiError(422, "document ids in one batch must be unique", "validation_error")
    with state.sessions() as session:
        others = _others(session, ids, caller)
        if others:
            raise ApiError(
                403, f"another user's documents have these ids: {sorted(others)[:10]}", "forbidden"
            )
        new_items = [
            attempts.ItemToQueue(
                document_id=d.id,
                filename=d.path or d.id,
                payload=d.text.encode(),
                content_type="text/plain",
                title=d.title,
                metadata=dict(d.metadata),
                readers=resolve(session, d.access, caller.user_id),
                owner_id=caller.user_id,
            )
            for d in body.documents
        ]
    return _response(_queue(state, new_items, {}), new_items)


@router.get(
    "/index-attempts/{attempt_id}", response_model=AttemptOut, responses=error_responses(404)
)
def get_attempt(attempt_id: uuid.UUID, state: StateDep, caller: Searching) -> AttemptOut:
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
            started_at=iso(attempt.started_at),
            finished_at=iso(attempt.finished_at),
            total=len(items),
            done=sum(i.status in finished for i in items),
            failed=sum(i.status == AttemptStatus.FAILED.value for i in items),
            items=items,
        )
