"""A worker's background duties: keep its leases alive, and sweep for stranded work.

The heartbeat extends the lease of every item this worker holds, every third of the lease.
The sweep, every few seconds (and once at start-up): finishes attempts whose items all
finished (their last worker died before finishing the attempt), and when due items wait
(new, retrying, or held by a dead worker whose lease ran out) while no message is queued,
sends messages for them. Every worker runs both; they are idempotent, so several workers
sweeping at once only send a few extra messages, which claim nothing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from tandem.db import attempts
from tandem.work_queue import claims
from tandem.worker.held import HeldItems

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepResult:
    due: int
    sent: int
    attempts_finished: int


class Periodic:
    """Runs `action` every `interval` seconds in a daemon thread until stopped. A database
    or broker error is logged and tried again next time (they come back on their own)."""

    def __init__(
        self,
        name: str,
        interval: float,
        action: Callable[[], object],
        on_run: Callable[[], None] | None = None,
    ) -> None:
        self._interval = interval
        self._action = action
        # Told after every run, failed ones included: the loop goes on (liveness).
        self._on_run = on_run
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(self._interval + 5.0)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._action()
            except (SQLAlchemyError, RedisError, BrokerError) as exc:
                log.warning("%s_failed error=%s", self._thread.name, exc)
            if self._on_run is not None:
                self._on_run()


@dataclass
class Sweeper:
    sessions: sessionmaker[Session]
    queue_length: Callable[[], int]
    send: Callable[[int, str], None]  # (messages, origin)
    threads: int  # messages sent at most per sweep: one per thread that could claim

    def sweep(self, origin: str = "sweep") -> SweepResult:
        finished = attempts.unfinished_attempts_done(self.sessions)
        due = claims.claimable_count(self.sessions, cap=self.threads)
        sent = 0
        if due and self.queue_length() == 0:
            sent = due
            self.send(sent, origin)
            log.info("sweep_sent origin=%s messages=%d", origin, sent)
        return SweepResult(due=due, sent=sent, attempts_finished=finished)


def heartbeat(
    sessions: sessionmaker[Session],
    owner: str,
    held: HeldItems,
    lease_seconds: float,
    on_run: Callable[[], None] | None = None,
) -> Periodic:
    return Periodic(
        "lease-heartbeat",
        lease_seconds / 3,
        lambda: claims.extend_leases(sessions, owner, held.current(), lease_seconds),
        on_run,
    )
