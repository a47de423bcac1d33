"""Index attempts and their items: created by the API, finished once every item is.

Workers claim, lease and record the items themselves through `tandem.work_queue.claims`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, func, select, text
from sqlalchemy.orm import Session, sessionmaker

from tandem.db.models import PUBLIC, UPLOAD_SOURCE, AttemptStatus, IndexAttempt, IndexAttemptItem
from tandem.db.sources import finish_syncs

TERMINAL = (AttemptStatus.SUCCEEDED, AttemptStatus.FAILED)

# The end of the WAL inserted so far. At the very start of a page the server reports the
# position past that page's header (24 bytes; 40 at a segment's start), which a standby
# replaying every record never reaches until more WAL is written: a replica would then be
# ruled out of reads on a quiet primary for no reason.
WAL_END_SQL = """
SELECT (CASE
    WHEN o % pg_size_bytes(current_setting('wal_segment_size')) = 40 THEN p - 40
    WHEN o % current_setting('wal_block_size')::numeric = 24 THEN p - 24
    ELSE p
END)::text
FROM (
    SELECT p, p - '0/0'::pg_lsn AS o
    FROM coalesce(CAST(:at AS pg_lsn), pg_current_wal_insert_lsn()) AS p
) AS insert
"""


@dataclass(frozen=True, slots=True)
class ItemToQueue:
    """An item to enqueue: what an upload or a sync hands `create_attempt` (its row is an
    `IndexAttemptItem`; the API shows it as `AttemptItemOut`)."""

    document_id: str
    filename: str  # the document's path in its source
    payload: bytes
    source: str = UPLOAD_SOURCE
    readers: tuple[str, ...] = (PUBLIC,)  # who may read the document (db.principals)
    owner_id: int | None = None  # who sent it
    content_type: str | None = None
    title: str | None = None
    metadata: dict[str, Any] | None = None


def create_attempt(
    session: Session, items: list[ItemToQueue], *, collecting: bool = False
) -> tuple[IndexAttempt, list[int]]:
    """A new attempt with `items`; `collecting`: more will be added (`add_items`) and it is
    not finished until `stop_collecting`."""
    attempt = IndexAttempt(status=AttemptStatus.QUEUED, collecting=collecting)
    attempt.items = _new_rows(items, 0)
    session.add(attempt)
    session.flush()
    return attempt, [item.id for item in attempt.items]


def add_items(session: Session, attempt_id: uuid.UUID, items: list[ItemToQueue]) -> list[int]:
    """Append items to a collecting attempt; their ids."""
    start = session.execute(
        select(func.coalesce(func.max(IndexAttemptItem.position) + 1, 0)).where(
            IndexAttemptItem.attempt_id == attempt_id
        )
    ).scalar_one()
    rows = _new_rows(items, int(start))
    for row in rows:
        row.attempt_id = attempt_id
    session.add_all(rows)
    session.flush()
    return [row.id for row in rows]


def stop_collecting(session: Session, attempt_id: uuid.UUID) -> None:
    """No more items: the attempt finishes with its last item (now, if all are done)."""
    attempt = session.get(IndexAttempt, attempt_id, with_for_update=True, populate_existing=True)
    if attempt is None:
        return
    attempt.collecting = False
    session.flush()
    finish_attempt_if_done(session, attempt_id)


def _new_rows(items: list[ItemToQueue], start: int) -> list[IndexAttemptItem]:
    return [
        IndexAttemptItem(
            position=position,
            document_id=item.document_id,
            source=item.source,
            readers=list(item.readers),
            owner_id=item.owner_id,
            filename=item.filename,
            content_type=item.content_type,
            title=item.title,
            metadata_=item.metadata or {},
            payload=item.payload,
            size_bytes=len(item.payload),
            status=AttemptStatus.QUEUED,
            chunk_count=0,
        )
        for position, item in enumerate(items, start)
    ]


def finish_attempt_if_done(session: Session, attempt_id: uuid.UUID) -> None:
    attempt = session.get(IndexAttempt, attempt_id, with_for_update=True)
    if attempt is None or attempt.status in TERMINAL or attempt.collecting:
        return
    counts = dict(
        session.execute(
            select(IndexAttemptItem.status, func.count())
            .where(IndexAttemptItem.attempt_id == attempt_id)
            .group_by(IndexAttemptItem.status)
        ).all()
    )
    if counts.get(AttemptStatus.QUEUED) or counts.get(AttemptStatus.RUNNING):
        return
    failed, total = counts.get(AttemptStatus.FAILED, 0), sum(counts.values())
    # An attempt fails only when nothing in it could be indexed; per-file errors stay
    # readable on the items either way.
    attempt.status = AttemptStatus.FAILED if failed == total else AttemptStatus.SUCCEEDED
    attempt.error = f"{failed} of {total} item(s) failed" if failed else None
    attempt.finished_at = datetime.now(UTC)
    if total == 0:  # a sync that found nothing to index
        attempt.status = AttemptStatus.SUCCEEDED
    if attempt.status == AttemptStatus.SUCCEEDED:
        # Every item's chunks were committed before this transaction began (items finish
        # in their own): a replica replayed past here can serve them (db.replicas).
        attempt.succeeded_lsn = wal_end(session)
    finish_syncs(session, attempt_id, failed)


def finish_attempts(sessions: sessionmaker[Session], attempt_ids: Iterable[uuid.UUID]) -> None:
    """After items were recorded in their own transactions: each attempt whose items are
    all finished is finished too. Runs after the items' commits, so of two workers
    finishing an attempt's last items at once, at least the later one sees all of them."""
    for attempt_id in sorted(set(attempt_ids)):
        with sessions.begin() as session:
            finish_attempt_if_done(session, attempt_id)


def finish_item(
    sessions: sessionmaker[Session], item_id: int, *, chunk_count: int = 0, error: str | None = None
) -> None:
    """Finish an item nobody has claimed (the API failing a file it refused at upload)."""
    status = AttemptStatus.FAILED if error else AttemptStatus.SUCCEEDED
    with sessions.begin() as session:
        item = session.get(IndexAttemptItem, item_id, with_for_update=True)
        if item is None:
            return
        item.status = status
        item.error = error
        item.chunk_count = chunk_count
        item.payload = None
        finish_attempt_if_done(session, item.attempt_id)


def unfinished_attempts_done(sessions: sessionmaker[Session]) -> int:
    """Finish attempts whose items all finished but whose last worker stopped before
    finishing the attempt itself. Returns how many were finished."""
    with sessions() as session:
        ids = list(
            session.execute(
                text(
                    "SELECT a.id FROM index_attempts a WHERE a.status IN ('queued', 'running') "
                    "AND NOT EXISTS (SELECT 1 FROM index_attempt_items i WHERE "
                    "i.attempt_id = a.id AND i.status IN ('queued', 'running'))"
                )
            ).scalars()
        )
    finish_attempts(sessions, ids)
    return len(ids)


def waiting_items(session: Session) -> int:
    """Items stored and not yet claimed (or given back to wait for a retry)."""
    return int(
        session.execute(
            text("SELECT count(*) FROM index_attempt_items WHERE status = 'queued'")
        ).scalar_one()
    )


def wal_end(session: Session | Connection, at: str | None = None) -> str:
    """The end of the WAL inserted so far (or of the insert position `at`), as text."""
    return str(session.execute(text(WAL_END_SQL), {"at": at}).scalar_one())


def newest_succeeded_lsn(session: Session | Connection) -> str | None:
    """The WAL position of the latest success (an index probe), None before any."""
    value = session.execute(
        text("SELECT max(succeeded_lsn)::text FROM index_attempts WHERE succeeded_lsn IS NOT NULL")
    ).scalar_one()
    return None if value is None else str(value)


def get_attempt(session: Session, attempt_id: uuid.UUID) -> IndexAttempt | None:
    return session.get(IndexAttempt, attempt_id)
