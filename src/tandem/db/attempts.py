"""Index attempts and their items: created by the API, advanced by workers.

Every transition is its own short transaction, so a worker killed at any point leaves a
state the retried task can continue from.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from tandem.db.models import AttemptStatus, IndexAttempt, IndexAttemptItem

TERMINAL = (AttemptStatus.SUCCEEDED, AttemptStatus.FAILED)


@dataclass(frozen=True, slots=True)
class NewItem:
    document_id: str
    filename: str
    payload: bytes
    content_type: str | None = None
    title: str | None = None
    metadata: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class WorkItem:
    id: int
    attempt_id: uuid.UUID
    document_id: str
    filename: str
    content_type: str | None
    title: str | None
    metadata: dict[str, Any]
    payload: bytes
    size_bytes: int


def create_attempt(session: Session, items: list[NewItem]) -> tuple[IndexAttempt, list[int]]:
    attempt = IndexAttempt(status=AttemptStatus.QUEUED)
    attempt.items = [
        IndexAttemptItem(
            position=position,
            document_id=item.document_id,
            filename=item.filename,
            content_type=item.content_type,
            title=item.title,
            metadata_=item.metadata or {},
            payload=item.payload,
            size_bytes=len(item.payload),
            status=AttemptStatus.QUEUED,
            chunk_count=0,
        )
        for position, item in enumerate(items)
    ]
    session.add(attempt)
    session.flush()
    return attempt, [item.id for item in attempt.items]


def start_item(sessions: sessionmaker[Session], item_id: int) -> WorkItem | None:
    """Mark an item running; None when it is gone or already finished (a duplicate task)."""
    now = datetime.now(UTC)
    with sessions.begin() as session:
        item = session.get(IndexAttemptItem, item_id, with_for_update=True)
        if item is None or item.status in TERMINAL or item.payload is None:
            return None
        item.status = AttemptStatus.RUNNING
        session.execute(
            update(IndexAttempt)
            .where(IndexAttempt.id == item.attempt_id, IndexAttempt.started_at.is_(None))
            .values(started_at=now)
        )
        session.execute(
            update(IndexAttempt)
            .where(IndexAttempt.id == item.attempt_id, IndexAttempt.status == AttemptStatus.QUEUED)
            .values(status=AttemptStatus.RUNNING)
        )
        return WorkItem(
            id=item.id,
            attempt_id=item.attempt_id,
            document_id=item.document_id,
            filename=item.filename,
            content_type=item.content_type,
            title=item.title,
            metadata=dict(item.metadata_),
            payload=item.payload,
            size_bytes=item.size_bytes,
        )


def note_waiting(sessions: sessionmaker[Session], item_id: int, reason: str) -> None:
    """Visible progress while the indexing server is away; the task will retry."""
    with sessions.begin() as session:
        session.execute(
            update(IndexAttemptItem)
            .where(IndexAttemptItem.id == item_id, IndexAttemptItem.status.not_in(TERMINAL))
            .values(status=AttemptStatus.QUEUED, error=f"waiting to retry: {reason}")
        )


def finish_item(
    sessions: sessionmaker[Session], item_id: int, *, chunk_count: int = 0, error: str | None = None
) -> None:
    status = AttemptStatus.FAILED if error else AttemptStatus.SUCCEEDED
    with sessions.begin() as session:
        item = session.get(IndexAttemptItem, item_id, with_for_update=True)
        if item is None:
            return
        item.status = status
        item.error = error
        item.chunk_count = chunk_count
        item.payload = None  # indexed (or hopeless): the bytes are no longer needed
        _finish_attempt_if_done(session, item.attempt_id)


def _finish_attempt_if_done(session: Session, attempt_id: uuid.UUID) -> None:
    attempt = session.get(IndexAttempt, attempt_id, with_for_update=True)
    if attempt is None:
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


def get_attempt(session: Session, attempt_id: uuid.UUID) -> IndexAttempt | None:
    return session.get(IndexAttempt, attempt_id)


def stale_item_ids(session: Session, older_than: timedelta) -> list[int]:
    """Unfinished items of attempts older than ``older_than``: their tasks may be lost."""
    cutoff = datetime.now(UTC) - older_than
    rows = session.execute(
        select(IndexAttemptItem.id)
        .join(IndexAttempt)
        .where(IndexAttemptItem.status.not_in(TERMINAL), IndexAttempt.created_at < cutoff)
        .order_by(IndexAttemptItem.id)
    )
    return [int(r[0]) for r in rows]
