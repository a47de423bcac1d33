"""The lease and schedule behind source syncs (tandem.db.sources), on a real PostgreSQL:
one sync of a source at a time, take-over after a lease runs out, requests made during a
sync, and the interval schedule."""

from __future__ import annotations

import time
from datetime import timedelta

from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from tandem.db import attempts, sources
from tandem.db.models import SourceKind


def _add(sessions: sessionmaker[Session], name: str, every: int | None = None) -> None:
    with sessions.begin() as session:
        sources.create_source(session, name, SourceKind.FOLDER, {"path": "/srv"}, every)


def _claim(
    sessions: sessionmaker[Session], owner: str, lease: float = 30.0
) -> sources.ClaimedSource | None:
    with sessions.begin() as session:
        return sources.claim_due(session, owner, lease)


def _finish(sessions: sessionmaker[Session], claimed: sources.ClaimedSource) -> None:
    with sessions.begin() as session:
        attempt, _ = attempts.create_attempt(session, [], collecting=True)
        sync = sources.start_sync(session, claimed, attempt.id)
        sources.finish_walk(session, sync.id)
        attempts.stop_collecting(session, attempt.id)
        sources.release(session, claimed, sync.started_at)


def test_a_source_is_synced_by_one_worker_at_a_time(
    empty_database: sessionmaker[Session],
) -> None:
    _add(empty_database, "docs")
    first = _claim(empty_database, "worker-a")
    assert first is not None and first.name == "docs"
    assert _claim(empty_database, "worker-b") is None  # held by worker-a's lease
    _finish(empty_database, first)
    assert _claim(empty_database, "worker-b") is None  # done, and no interval: not due


def test_a_lease_that_runs_out_is_taken_over_and_the_old_sync_is_interrupted(
    empty_database: sessionmaker[Session],
) -> None:
    _add(empty_database, "docs")
    dead = _claim(empty_database, "worker-a", lease=0.2)
    assert dead is not None
    with empty_database.begin() as session:
        attempt, _ = attempts.create_attempt(session, [], collecting=True)
        sources.start_sync(session, dead, attempt.id)
    time.sleep(0.4)
    taken = _claim(empty_database, "worker-b")
    assert taken is not None and taken.owner == "worker-b"
    with empty_database.begin() as session:
        extended = sources.extend_lease(session, dead, 30.0)
    assert not extended  # the dead worker's heartbeat finds its lease gone
    _finish(empty_database, taken)
    with empty_database() as session:
        statuses = session.execute(
            text("SELECT status FROM source_syncs WHERE source = 'docs' ORDER BY id")
        ).scalars()
        assert list(statuses) == ["interrupted", "succeeded"]
        collecting = session.execute(
            text("SELECT count(*) FROM index_attempts WHERE collecting")
        ).scalar_one()
        assert collecting == 0


def test_a_request_made_during_a_sync_runs_one_more_sync(
    empty_database: sessionmaker[Session],
) -> None:
    _add(empty_database, "docs")
    claimed = _claim(empty_database, "worker-a")
    assert claimed is not None
    with empty_database.begin() as session:
        attempt, _ = attempts.create_attempt(session, [], collecting=True)
        sync = sources.start_sync(session, claimed, attempt.id)
    time.sleep(0.05)
    with empty_database.begin() as session:
        assert sources.request_sync(session, "docs")
        sources.release(session, claimed, sync.started_at)
    again = _claim(empty_database, "worker-b")
    assert again is not None  # the request came after the sync started: it stands
    _finish(empty_database, again)
    assert _claim(empty_database, "worker-c") is None


def test_an_interval_schedules_the_next_sync_from_the_last_start(
    empty_database: sessionmaker[Session],
) -> None:
    _add(empty_database, "docs", every=60)
    claimed = _claim(empty_database, "worker-a")
    assert claimed is not None
    _finish(empty_database, claimed)
    with empty_database() as session:
        source = sources.get_source(session, "docs")
        assert source is not None and source.next_sync_at is not None
        last = sources.latest_syncs(session, ["docs"])["docs"]
        assert source.next_sync_at - last.started_at == timedelta(seconds=60)
    assert _claim(empty_database, "worker-b") is None  # not due for a minute
    with empty_database.begin() as session:
        session.execute(
            text("UPDATE sources SET next_sync_at = now() - interval '1 s' WHERE name = 'docs'")
        )
    due = _claim(empty_database, "worker-b")
    assert due is not None and due.name == "docs"
