"""Sources: folders and web sites kept in sync (a thin adapter over tandem.db.sources;
the syncs themselves run on the workers)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from fastapi import APIRouter
from kombu.exceptions import OperationalError
from sqlalchemy.orm import Session

from tandem.api.access import access_out, readers_of, resolve
from tandem.api.state import Ingesting, Searching, StateDep
from tandem.db import sources
from tandem.db.models import Source, SourceKind, SourceSync
from tandem.db.principals import Caller
from tandem.wire.api import (
    SourceAccessIn,
    SourceIn,
    SourceList,
    SourceOut,
    SyncOut,
    SyncRequested,
    interval_seconds,
    iso,
)
from tandem.wire.errors import ApiError, error_responses
from tandem.work_queue.producer import request_syncs

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api", tags=["sources"], responses=error_responses(400, 401, 403, 422))


def _sync_out(sync: SourceSync) -> SyncOut:
    status = sync.status
    if status == "running" and sync.walked_at is not None:
        status = "indexing"  # walked; its items are being indexed
    return SyncOut(
        id=sync.id,
        status=status,
        started_at=sync.started_at.isoformat(),
        walked_at=iso(sync.walked_at),
        finished_at=iso(sync.finished_at),
        added=sync.added,
        updated=sync.updated,
        unchanged=sync.unchanged,
        deleted=sync.deleted,
        failed=sync.failed,
        errors=list(sync.errors),
        attempt_id=str(sync.attempt_id) if sync.attempt_id else None,
    )


def _source_out(source: Source, last: SourceSync | None, names: dict[str, str]) -> SourceOut:
    lease = source.sync_lease_expires_at
    return SourceOut(
        name=source.name,
        kind=source.kind,
        settings=dict(source.settings),
        access=access_out(source.readers, names),
        interval_seconds=source.interval_seconds,
        next_sync_at=iso(source.next_sync_at),
        syncing=lease is not None and lease > datetime.now(UTC),
        last_sync=_sync_out(last) if last is not None else None,
    )


def _wake_workers(state: StateDep) -> None:
    try:
        request_syncs(state.celery, state.settings.task_expiry_seconds)
    except OperationalError as exc:
        # Stored: a worker's next sweep starts it.
        log.error("sync_request_send_failed error=%s", exc)


def _not_found(name: str) -> ApiError:
    return ApiError(404, f"no source {name!r}", "not_found")


def _visible(source: Source, caller: Caller) -> bool:
    """An admin sees every source; others the upload source and the sources they added."""
    return (
        caller.readers is None
        or source.kind == SourceKind.UPLOAD
        or (source.owner_id is not None and source.owner_id == caller.user_id)
    )


def _manageable(session: Session, name: str, caller: Caller) -> Source:
    source = sources.get_source(session, name)
    if source is None or not _visible(source, caller):
        raise _not_found(name)
    if source.kind == SourceKind.UPLOAD:
        raise ApiError(422, "the upload source holds what is sent to the API", "not_synced")
    return source


@router.post("/sources", response_model=SourceOut, status_code=201, responses=error_responses(409))
def add_source(body: SourceIn, state: StateDep, caller: Ingesting) -> SourceOut:
    """Add a folder or web source; its first sync starts at once. A folder is read on the
    workers' host, so only an admin may add one."""
    if body.kind == "folder" and caller.readers is not None:
        raise ApiError(403, "only an admin may add a folder of the workers' host", "forbidden")
    every = interval_seconds(body.every) if body.every else None
    with state.sessions.begin() as session:
        readers = resolve(session, body.access, caller.user_id)
        try:
            source = sources.create_source(
                session,
                body.name,
                SourceKind(body.kind),
                body.settings(),
                every,
                readers,
                caller.user_id,
            )
        except sources.SourceExists as exc:
            raise ApiError(409, str(exc), "source_exists") from exc
        created = _source_out(source, None, readers_of(session, [source.readers]))
    _wake_workers(state)
    return created


@router.get("/sources", response_model=SourceList)
def list_sources(state: StateDep, caller: Searching) -> SourceList:
    with state.sessions() as session:
        listed = [(s, last) for s, last in sources.list_sources(session) if _visible(s, caller)]
        names = readers_of(session, [s.readers for s, _ in listed])
        return SourceList(items=[_source_out(s, last, names) for s, last in listed])


@router.get("/sources/{name}", response_model=SourceOut, responses=error_responses(404))
def get_source(name: str, state: StateDep, caller: Searching) -> SourceOut:
    with state.sessions() as session:
        source = sources.get_source(session, name)
        if source is None or not _visible(source, caller):
            raise _not_found(name)
        last = sources.latest_syncs(session, [name]).get(name)
        return _source_out(source, last, readers_of(session, [source.readers]))


@router.put("/sources/{name}/access", response_model=SourceOut, responses=error_responses(404))
def set_source_access(
    name: str, body: SourceAccessIn, state: StateDep, caller: Ingesting
) -> SourceOut:
    """Who may read the source's documents: applied to them at once, nothing re-embedded."""
    with state.sessions.begin() as session:
        source = _manageable(session, name, caller)
        readers = resolve(session, body.access, source.owner_id)
        sources.set_readers(session, name, readers)
        state.index.writer.set_source_readers(session, name, readers)
        session.refresh(source)
        last = sources.latest_syncs(session, [name]).get(name)
        return _source_out(source, last, readers_of(session, [source.readers]))


@router.post(
    "/sources/{name}/sync",
    response_model=SyncRequested,
    status_code=202,
    responses=error_responses(404),
)
def sync_source(name: str, state: StateDep, caller: Ingesting) -> SyncRequested:
    """Sync now (after the running sync, if one runs)."""
    with state.sessions.begin() as session:
        _manageable(session, name, caller)
        sources.request_sync(session, name)
    _wake_workers(state)
    return SyncRequested(name=name, requested=True)


@router.delete("/sources/{name}", status_code=204, responses=error_responses(404))
def remove_source(name: str, state: StateDep, caller: Ingesting) -> None:
    """Remove a source and every document it holds."""
    if name == sources.UPLOAD_SOURCE:
        raise ApiError(422, "the upload source cannot be removed", "validation_error")
    with state.sessions.begin() as session:
        _manageable(session, name, caller)
        sources.delete_source(session, name)
