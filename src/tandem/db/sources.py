"""Sources, their syncs and what each sync saw: the tables behind `tandem.sources`.

A source's sync runs under a lease on its row (`claim_due`), so at most one sync of a
source runs at a time whatever the number of workers; a worker that dies mid-sync loses
the lease and the next worker to sweep starts the sync again (its walk skips what the
first one already queued, by content hash). The schedule is kept here too: a source with
an interval is due again `interval_seconds` after its last sync started.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from tandem.db.models import PUBLIC, UPLOAD_SOURCE, Source, SourceKind, SourceSync

__all__ = ["UPLOAD_SOURCE"]

MAX_DOCUMENT_ID = 512


def document_id(source: str, path: str) -> str:
    """A document's id: its source and its path (`docs:beta/README.md`); the upload
    source's documents keep the bare path their ids always had. An id too long for the
    column ends in the path's hash instead (the path itself is kept in full)."""
    whole = path if source == UPLOAD_SOURCE else f"{source}:{path}"
    if len(whole) <= MAX_DOCUMENT_ID:
        return whole
    digest = hashlib.sha256(path.encode()).hexdigest()
    return f"{whole[: MAX_DOCUMENT_ID - len(digest) - 1]}#{digest}"


class InvalidPath(ValueError):
    pass


def clean_path(raw: str) -> str:
    """A document path as stored: POSIX separators, no empty, `.` or drive parts, no
    leading `/`. `..` is refused rather than resolved: a path never leaves its source."""
    parts = [p for p in raw.replace("\\", "/").split("/")]
    if parts and len(parts[0]) == 2 and parts[0][1] == ":":  # a Windows drive, C:
        parts = parts[1:]
    kept = [p for p in parts if p not in ("", ".")]
    if ".." in kept:
        raise InvalidPath(f"path {raw!r} contains '..'")
    if not kept:
        raise InvalidPath("a path must name a file")
    if any("\x00" in p for p in kept):
        raise InvalidPath(f"path {raw!r} contains a NUL character")
    return "/".join(kept)


class SourceExists(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class ClaimedSource:
    """A source whose sync this worker now holds the lease of."""

    name: str
    kind: SourceKind
    settings: dict[str, Any]
    owner: str  # the worker holding the lease
    readers: tuple[str, ...] = (PUBLIC,)  # what its documents get
    owner_id: int | None = None  # the user who added it


@dataclass(frozen=True, slots=True)
class Entry:
    """What the last sync saw at one path."""

    version: str
    content_hash: str
    document_id: str
    links: tuple[str, ...] = ()


def create_source(
    session: Session,
    name: str,
    kind: SourceKind,
    settings: dict[str, Any],
    interval_seconds: int | None,
    readers: Sequence[str] = (PUBLIC,),
    owner_id: int | None = None,
) -> Source:
    if session.get(Source, name) is not None:
        raise SourceExists(f"a source named {name!r} exists already")
    source = Source(
        name=name,
        kind=kind.value,
        settings=settings,
        interval_seconds=interval_seconds,
        readers=list(readers),
        owner_id=owner_id,
        # A new source syncs at once; its interval counts from then.
        sync_requested_at=func.now(),
    )
    session.add(source)
    session.flush()
    return source


def get_source(session: Session, name: str) -> Source | None:
    return session.get(Source, name)


def list_sources(session: Session) -> list[tuple[Source, SourceSync | None]]:
    sources = list(session.execute(select(Source).order_by(Source.name)).scalars())
    last = latest_syncs(session, [s.name for s in sources])
    return [(s, last.get(s.name)) for s in sources]


def latest_syncs(session: Session, names: Sequence[str]) -> dict[str, SourceSync]:
    if not names:
        return {}
    newest = (
        select(func.max(SourceSync.id))
        .where(SourceSync.source.in_(names))
        .group_by(SourceSync.source)
    )
    rows = session.execute(select(SourceSync).where(SourceSync.id.in_(newest))).scalars()
    return {s.source: s for s in rows}


def delete_source(session: Session, name: str) -> bool:
    """Remove a source and its documents (their chunks go with them); items still
    waiting to index its files fail instead of bringing documents back."""
    source = session.get(Source, name, with_for_update=True)
    if source is None:
        return False
    session.execute(
        text(
            "UPDATE index_attempt_items SET status = 'failed', payload = NULL, "
            "error = 'its source was removed', lease_owner = NULL, lease_expires_at = NULL "
            "WHERE source = :name AND status IN ('queued', 'running')"
        ),
        {"name": name},
    )
    session.execute(text("DELETE FROM documents WHERE source = :name"), {"name": name})
    session.delete(source)
    return True


def set_readers(session: Session, name: str, readers: Sequence[str]) -> None:
    """A source's documents take new readers: the source's and its documents' rows (the
    caller gives their chunks the same readers, through the index's writer)."""
    params = {"name": name, "r": list(readers)}
    session.execute(text("UPDATE sources SET readers = :r WHERE name = :name"), params)
    session.execute(text("UPDATE documents SET readers = :r WHERE source = :name"), params)


def request_sync(session: Session, name: str) -> bool:
    result = session.execute(
        text(
            "UPDATE sources SET sync_requested_at = now() WHERE name = :name AND kind <> 'upload'"
        ),
        {"name": name},
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


_CLAIM = text(
    """
    UPDATE sources s SET sync_owner = :owner,
        sync_lease_expires_at = now() + make_interval(secs => :lease)
    WHERE s.name = (
        SELECT name FROM sources
        WHERE kind <> 'upload'
          AND (sync_requested_at IS NOT NULL OR next_sync_at <= now())
          AND (sync_lease_expires_at IS NULL OR sync_lease_expires_at < now())
        ORDER BY coalesce(sync_requested_at, next_sync_at), name
        LIMIT 1 FOR UPDATE SKIP LOCKED)
    RETURNING s.name, s.kind, s.settings, s.readers, s.owner_id
    """
)


def claim_due(session: Session, owner: str, lease_seconds: float) -> ClaimedSource | None:
    """Take the lease of the source most overdue for a sync, if any is."""
    row = session.execute(_CLAIM, {"owner": owner, "lease": lease_seconds}).first()
    if row is None:
        return None
    return ClaimedSource(
        row.name, SourceKind(row.kind), dict(row.settings), owner, tuple(row.readers), row.owner_id
    )


def extend_lease(session: Session, claimed: ClaimedSource, lease_seconds: float) -> bool:
    """The sync's heartbeat; False when the lease was lost (another worker took over)."""
    result = session.execute(
        text(
            "UPDATE sources SET sync_lease_expires_at = now() + make_interval(secs => :lease) "
            "WHERE name = :name AND sync_owner = :owner"
        ),
        {"name": claimed.name, "owner": claimed.owner, "lease": lease_seconds},
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def release(session: Session, claimed: ClaimedSource, started_at: datetime) -> None:
    """The sync ended: give the lease back, clear a request it served (one made while it
    ran is kept: that sync runs next), and schedule the next run."""
    session.execute(
        text(
            "UPDATE sources SET sync_owner = NULL, sync_lease_expires_at = NULL, "
            "sync_requested_at = CASE WHEN sync_requested_at <= :started THEN NULL "
            "ELSE sync_requested_at END, "
            "next_sync_at = CASE WHEN interval_seconds IS NULL THEN NULL "
            "ELSE CAST(:started AS timestamptz) + make_interval(secs => interval_seconds) END "
            "WHERE name = :name AND sync_owner = :owner"
        ),
        {"name": claimed.name, "owner": claimed.owner, "started": started_at},
    )


def start_sync(session: Session, claimed: ClaimedSource, attempt_id: uuid.UUID) -> SourceSync:
    """A new sync row; an earlier one still `running` was cut short by its worker's death."""
    # Their attempts collect no more items; the sweep finishes them once those are done.
    session.execute(
        text(
            "UPDATE index_attempts SET collecting = false WHERE id IN (SELECT attempt_id "
            "FROM source_syncs WHERE source = :name AND finished_at IS NULL)"
        ),
        {"name": claimed.name},
    )
    session.execute(
        text(
            "UPDATE source_syncs SET status = 'interrupted', finished_at = now() "
            "WHERE source = :name AND finished_at IS NULL"
        ),
        {"name": claimed.name},
    )
    sync = SourceSync(
        source=claimed.name, status="running", owner=claimed.owner, attempt_id=attempt_id
    )
    session.add(sync)
    session.flush()
    session.refresh(sync)
    return sync


def finish_syncs(session: Session, attempt_id: uuid.UUID, failed_items: int) -> None:
    """The attempt of a walked sync finished: so did the sync, with its failed items."""
    session.execute(
        text(
            "UPDATE source_syncs SET status = 'succeeded', finished_at = now(), "
            "failed = failed + :failed "
            "WHERE attempt_id = :id AND walked_at IS NOT NULL AND finished_at IS NULL"
        ),
        {"id": attempt_id, "failed": failed_items},
    )


def entries(session: Session, source: str) -> dict[str, Entry]:
    rows = session.execute(
        text(
            "SELECT path, version, content_hash, document_id, links FROM source_entries "
            "WHERE source = :source"
        ),
        {"source": source},
    )
    return {
        row.path: Entry(row.version, row.content_hash, row.document_id, tuple(row.links))
        for row in rows
    }


def save_entries(session: Session, source: str, saved: dict[str, Entry]) -> None:
    if not saved:
        return
    paths = sorted(saved)
    session.execute(
        text(
            "INSERT INTO source_entries (source, path, version, content_hash, document_id, links)"
            " SELECT :source, * FROM unnest(CAST(:paths AS text[]), CAST(:versions AS text[]),"
            " CAST(:hashes AS text[]), CAST(:ids AS text[]), CAST(CAST(:links AS text[]) AS"
            " jsonb[])) ON CONFLICT (source, path) DO UPDATE SET version = excluded.version,"
            " content_hash = excluded.content_hash, document_id = excluded.document_id,"
            " links = excluded.links"
        ),
        {
            "source": source,
            "paths": paths,
            "versions": [saved[p].version for p in paths],
            "hashes": [saved[p].content_hash for p in paths],
            "ids": [saved[p].document_id for p in paths],
            "links": [orjson.dumps(list(saved[p].links)).decode() for p in paths],
        },
    )


def remove_paths(session: Session, source: str, removed: dict[str, Entry]) -> None:
    """Forget paths that are gone, and delete their documents (chunks cascade)."""
    if not removed:
        return
    session.execute(
        text("DELETE FROM documents WHERE source = :source AND id = ANY(:ids)"),
        {"source": source, "ids": sorted({e.document_id for e in removed.values()})},
    )
    session.execute(
        text("DELETE FROM source_entries WHERE source = :source AND path = ANY(:paths)"),
        {"source": source, "paths": sorted(removed)},
    )


def record_walk(session: Session, sync_id: int, counts: dict[str, int], errors: list[str]) -> None:
    """Progress of a walk (its counts so far); `walked_at` is set by `finish_walk`."""
    session.execute(
        text(
            "UPDATE source_syncs SET added = :added, updated = :updated, "
            "unchanged = :unchanged, deleted = :deleted, failed = :failed, "
            "errors = CAST(:errors AS jsonb) WHERE id = :id"
        ),
        {**counts, "errors": orjson.dumps(errors).decode(), "id": sync_id},
    )


def finish_walk(session: Session, sync_id: int, *, failed: str | None = None) -> None:
    """The walk is over; a sync whose walk failed is over too, and says why."""
    if failed is None:
        session.execute(
            text("UPDATE source_syncs SET walked_at = now() WHERE id = :id"), {"id": sync_id}
        )
        return
    session.execute(
        text(
            "UPDATE source_syncs SET walked_at = now(), finished_at = now(), "
            "status = 'failed', errors = errors || CAST(:error AS jsonb) WHERE id = :id"
        ),
        {"id": sync_id, "error": orjson.dumps([failed]).decode()},
    )
