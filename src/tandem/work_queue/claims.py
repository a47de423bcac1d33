"""The work queue: workers claim index attempt items, hold them under leases, and record
how each ended.

PostgreSQL, not the broker, is the work queue. A worker *claims* items (`FOR UPDATE SKIP
LOCKED`, so two workers never hold the same item) and holds each under a lease that its
heartbeat extends; an item whose lease ran out (its worker was killed) can be claimed
again. Every claim bumps the item's ``claims`` counter, which fences the final write: a
worker whose lease was taken over finds its token stale and writes nothing. Redis only
carries "there is work" messages (`tandem.work_queue.producer`), so a lost or redelivered message
never loses or doubles an item.

Items that failed before (an unexpected error, or a worker that died holding them) are
claimed one at a time, so one poisonous file cannot keep failing its batch-mates; after
``max_failures`` such failures an item is marked failed with the last error.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from tandem.db.attempts import finish_attempt_if_done
from tandem.db.models import AttemptStatus
from tandem.db.rows import from_row

WORKER_STOPPED = "the worker indexing this item stopped before finishing it"


@dataclass(frozen=True, slots=True)
class ClaimedItem:
    """An item a worker claimed (its `IndexAttemptItem` row, read under the lease)."""

    id: int
    attempt_id: uuid.UUID
    document_id: str
    source: str
    filename: str  # the document's path in its source
    content_type: str | None
    title: str | None
    metadata: dict[str, Any]
    payload: bytes
    size_bytes: int
    claim: int  # this claim's fencing token
    failures: int  # earlier unexpected errors or dead workers
    readers: tuple[str, ...] = ()
    owner_id: int | None = None

    def __post_init__(self) -> None:
        # A PostgreSQL array arrives as a list; readers are compared with the catalog's
        # tuples, and a list is never equal to a tuple.
        object.__setattr__(self, "readers", tuple(self.readers))


@dataclass(frozen=True, slots=True)
class ClaimLimits:
    owner: str  # the claiming worker process, unique per process start
    lease_seconds: float
    max_items: int
    max_bytes: int  # a batch stops growing past this many payload bytes (one item at least)
    max_failures: int


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one claimed item ended: indexed with `chunk_count` chunks (`embedded` of them
    embedded, the others' vectors reused; `outcome` added, updated or unchanged), or
    failed."""

    item: ClaimedItem
    chunk_count: int = 0
    error: str | None = None
    outcome: str | None = None
    embedded: int = 0
    # An unchanged document whose readers changed: they are set, nothing else.
    readers: tuple[str, ...] | None = None


# Claimable: queued and due, or running under a lease that ran out.
_RECOVERING = text(
    """
    SELECT id, status, failures, error FROM index_attempt_items
    WHERE status IN ('queued', 'running')
      AND ((status = 'running' AND lease_expires_at < now())
           OR (status = 'queued' AND failures > 0 AND coalesce(not_before, now()) <= now()))
    ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED
    """
)
_FRESH = text(
    """
    SELECT id, document_id, size_bytes FROM index_attempt_items
    WHERE status = 'queued' AND failures = 0 AND coalesce(not_before, now()) <= now()
    ORDER BY id LIMIT :limit FOR UPDATE SKIP LOCKED
    """
)
_TAKE = text(
    """
    UPDATE index_attempt_items
    SET status = 'running', claims = claims + 1, failures = :failures_delta + failures,
        lease_owner = :owner, lease_expires_at = now() + make_interval(secs => :lease),
        not_before = NULL
    WHERE id = ANY(:ids)
    -- the fields of ClaimedItem by name; a payload is never cleared before a terminal state
    RETURNING id, attempt_id, document_id, source, filename, content_type, title, metadata,
              coalesce(payload, ''::bytea) AS payload, size_bytes, claims AS claim, failures,
              readers, owner_id
    """
)
_START_ATTEMPTS = text(
    """
    UPDATE index_attempts
    SET started_at = coalesce(started_at, now()),
        status = CASE WHEN status = 'queued' THEN 'running'::attempt_status ELSE status END
    WHERE id = ANY(:ids)
    """
)
_GIVE_UP = text(
    """
    UPDATE index_attempt_items
    SET status = 'failed', error = :error, payload = NULL, lease_owner = NULL,
        lease_expires_at = NULL, failures = :failures
    WHERE id = :id
    RETURNING attempt_id
    """
)


def claim_items(sessions: sessionmaker[Session], limits: ClaimLimits) -> list[ClaimedItem]:
    """Claim the next batch: one recovering item alone, else up to ``max_items`` fresh ones
    (oldest first, within ``max_bytes``, one item per document). Empty when nothing is due."""
    with sessions.begin() as session:
        ids, failures_delta = _claim_recovering(session, limits)
        if not ids:
            ids = _claim_fresh(session, limits)
        if not ids:
            return []
        rows = session.execute(
            _TAKE,
            {
                "ids": ids,
                "owner": limits.owner,
                "lease": limits.lease_seconds,
                "failures_delta": failures_delta,
            },
        ).all()
        items = sorted((from_row(ClaimedItem, r) for r in rows), key=lambda i: i.id)
        session.execute(_START_ATTEMPTS, {"ids": sorted({i.attempt_id for i in items})})
        return items


def _claim_recovering(session: Session, limits: ClaimLimits) -> tuple[list[int], int]:
    """(the one recovering item to claim, or none; 1 when its worker died holding it)."""
    # Bounded: each round either claims or gives an item up for good.
    for _ in range(16):
        row = session.execute(_RECOVERING).first()
        if row is None:
            return [], 0
        died = row.status == AttemptStatus.RUNNING
        failures = int(row.failures) + (1 if died else 0)
        if failures < limits.max_failures:
            return [int(row.id)], 1 if died else 0
        last = WORKER_STOPPED if died else (row.error or "unknown error")
        error = f"gave up after {failures} failed attempts; the last: {last}"
        attempt_id = session.execute(
            _GIVE_UP, {"id": row.id, "error": error, "failures": failures}
        ).scalar_one()
        finish_attempt_if_done(session, attempt_id)
    return [], 0


def _claim_fresh(session: Session, limits: ClaimLimits) -> list[int]:
    ids: list[int] = []
    documents: set[str] = set()
    total = 0
    for row in session.execute(_FRESH, {"limit": limits.max_items}):
        if ids and total + int(row.size_bytes) > limits.max_bytes:
            break
        # Two uploads of one document in one batch would race in one statement; the
        # later one waits for the next batch (its row lock ends with this transaction).
        if row.document_id in documents:
            continue
        ids.append(int(row.id))
        documents.add(row.document_id)
        total += int(row.size_bytes)
    return ids


def extend_leases(
    sessions: sessionmaker[Session], owner: str, item_ids: Sequence[int], lease_seconds: float
) -> int:
    """The heartbeat: the items this worker is working on stay its own for another lease."""
    if not item_ids:
        return 0
    with sessions.begin() as session:
        result = session.execute(
            text(
                "UPDATE index_attempt_items SET lease_expires_at = now() + "
                "make_interval(secs => :lease) WHERE id = ANY(:ids) AND lease_owner = :owner "
                "AND status = 'running'"
            ),
            {"ids": list(item_ids), "owner": owner, "lease": lease_seconds},
        )
        return int(result.rowcount)  # type: ignore[attr-defined]


def lock_owned(session: Session, items: Sequence[ClaimedItem]) -> set[int]:
    """Lock the rows of `items` this claim still holds; the ids of those it holds. An item
    missing from the result was taken over (our lease ran out) or finished elsewhere."""
    if not items:
        return set()
    rows = session.execute(
        text(
            "SELECT i.id FROM index_attempt_items i "
            "JOIN unnest(CAST(:ids AS bigint[]), CAST(:claims AS integer[])) AS c(id, claims) "
            "ON i.id = c.id AND i.claims = c.claims WHERE i.status = 'running' "
            "ORDER BY i.id FOR UPDATE OF i"
        ),
        {"ids": [i.id for i in items], "claims": [i.claim for i in items]},
    )
    return {int(r[0]) for r in rows}


def record_outcomes(session: Session, outcomes: Sequence[Outcome]) -> None:
    """Finish items inside the caller's transaction (the one that wrote their chunks)."""
    if not outcomes:
        return
    session.execute(
        text(
            "UPDATE index_attempt_items AS i SET status = CAST(o.status AS attempt_item_status), "
            "error = o.error, chunk_count = o.chunks, outcome = o.outcome, "
            "embedded_chunks = o.embedded, payload = NULL, lease_owner = NULL, "
            "lease_expires_at = NULL, not_before = NULL "
            "FROM unnest(CAST(:ids AS bigint[]), CAST(:statuses AS text[]), "
            "CAST(:errors AS text[]), CAST(:chunks AS integer[]), CAST(:outcomes AS text[]), "
            "CAST(:embedded AS integer[])) AS o(id, status, error, chunks, outcome, embedded) "
            "WHERE i.id = o.id"
        ),
        {
            "ids": [o.item.id for o in outcomes],
            "statuses": [
                (AttemptStatus.FAILED if o.error else AttemptStatus.SUCCEEDED).value
                for o in outcomes
            ],
            "errors": [o.error for o in outcomes],
            "chunks": [o.chunk_count for o in outcomes],
            "outcomes": [None if o.error else o.outcome for o in outcomes],
            "embedded": [o.embedded for o in outcomes],
        },
    )


def release(
    sessions: sessionmaker[Session],
    items: Iterable[ClaimedItem],
    *,
    error: str | None,
    delay_seconds: float,
    count_failure: bool,
) -> None:
    """Give claimed items back to the queue, due again after `delay_seconds`.

    ``count_failure``: the error was unexpected (it counts towards ``max_failures`` and the
    item will be claimed alone); otherwise the item just waits (an unavailable indexing
    server, a worker shutting down)."""
    held = list(items)
    if not held:
        return
    with sessions.begin() as session:
        owned = lock_owned(session, held)
        if not owned:
            return
        session.execute(
            text(
                "UPDATE index_attempt_items SET status = 'queued', error = :error, "
                "failures = failures + :delta, lease_owner = NULL, lease_expires_at = NULL, "
                "not_before = now() + make_interval(secs => :delay) WHERE id = ANY(:ids)"
            ),
            {
                "ids": sorted(owned),
                "error": error,
                "delta": 1 if count_failure else 0,
                "delay": delay_seconds,
            },
        )


def release_owned(sessions: sessionmaker[Session], owner: str) -> int:
    """A worker shutting down hands back whatever it still holds, due at once."""
    with sessions.begin() as session:
        result = session.execute(
            text(
                "UPDATE index_attempt_items SET status = 'queued', lease_owner = NULL, "
                "lease_expires_at = NULL WHERE lease_owner = :owner AND status = 'running'"
            ),
            {"owner": owner},
        )
        return int(result.rowcount)  # type: ignore[attr-defined]


def claimable_count(sessions: sessionmaker[Session], cap: int) -> int:
    """Items a worker could claim right now (at most `cap` counted)."""
    with sessions() as session:
        return int(
            session.execute(
                text(
                    "SELECT count(*) FROM (SELECT 1 FROM index_attempt_items "
                    "WHERE status IN ('queued', 'running') AND ("
                    "(status = 'queued' AND coalesce(not_before, now()) <= now()) "
                    "OR (status = 'running' AND lease_expires_at < now())) LIMIT :cap) s"
                ),
                {"cap": cap},
            ).scalar_one()
        )
