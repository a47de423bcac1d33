"""Reads from PostgreSQL hot standbys, with the primary as the fallback.

A `ReadRouter` holds one engine per read replica and the primary's. Its `refresh` (run in
the background by `ReplicaMonitor`, never per query) measures each replica: reachable, in
recovery, how far it has replayed (`pg_last_wal_replay_lsn()`) and how far behind the
primary that is, in bytes and seconds. A replica that is down or lags past the bound is
skipped until a later refresh finds it well again.

Read-your-writes: a replica serves a read only once it has replayed past the newest
succeeded attempt's WAL position (`index_attempts.succeeded_lsn`, read from the primary
for each read: one index probe), so every document of an attempt that reports
`succeeded` is in what the read sees. The check is per connection: a replica's URL may be
a load-balancing Service (CloudNativePG's `-ro`) whose pooled connections reach different
standbys, so each transaction of a read first reads its own server's replayed position
(an engine `begin` event; every later statement of that transaction sees at least that),
and the read counts only if every one of them had reached the primary's answer. That
probe of the primary runs beside the read's connecting, not before it. A transaction
whose server is behind that answer waits for it to replay so far, up to `catch_up_seconds`
(a write that just succeeded is usually a few milliseconds from any standby's replay):
cheaper than reading twice. Otherwise, or when that replica fails, the plan is followed:
each replica read again, then the next one, then the primary. Every read is counted by
where it ran and how it ended (tandem.db.read_counts).
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TypeVar

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from tandem.db.attempts import newest_succeeded_lsn
from tandem.db.read_counts import ReadCounts, ReadOutcome
from tandem.db.session import make_session_factory

log = logging.getLogger(__name__)
T = TypeVar("T")
PRIMARY = "primary"
# Primary WAL positions remembered for the seconds-lag bound: at one refresh a second,
# about four minutes.
_HISTORY = 256
_REPLAYED = text("SELECT pg_last_wal_replay_lsn()::text")
# A transaction behind the required position asks its server again this often.
_CATCH_UP_POLL_SECONDS = 0.002
DEFAULT_CATCH_UP_SECONDS = 0.1


@dataclass(slots=True)
class _ReplicaRead:
    """The replica read running in this context (`ReadRouter._replica_read`): what its
    transactions must have replayed, and the positions they had (None: a server not in
    recovery, which has everything)."""

    replica: str
    required: Future[int]
    catch_up_seconds: float
    counts: ReadCounts
    positions: list[int | None] = field(default_factory=list)


# The index's side threads run in a copy of the caller's context, so their transactions
# are checked and collected too.
_READ: ContextVar[_ReplicaRead | None] = ContextVar("replica_read", default=None)


def _replayed(connection: Connection) -> int | None:
    value = connection.execute(_REPLAYED).scalar()
    return None if value is None else parse_lsn(str(value))


def _record_position(connection: Connection) -> None:
    """A replica engine's `begin` event: during a replica read, this transaction's own
    server's replayed position, before anything else runs in it; when that is behind the
    required position, after waiting (a bounded time) for the server to replay so far."""
    read = _READ.get()
    if read is None:
        return
    position = _replayed(connection)
    if position is not None and position < (required := read.required.result()):
        started = time.monotonic()
        deadline = started + read.catch_up_seconds
        while position is not None and position < required and time.monotonic() < deadline:
            time.sleep(_CATCH_UP_POLL_SECONDS)
            position = _replayed(connection)
        read.counts.waited(read.replica, time.monotonic() - started)
    read.positions.append(position)


def parse_lsn(value: str) -> int:
    """`16/B374D848` -> a byte position (high 32 bits / low 32 bits, in hex)."""
    high, _, low = value.partition("/")
    return (int(high, 16) << 32) + int(low, 16)


@dataclass(frozen=True, slots=True)
class ReplicaStatus:
    name: str
    healthy: bool
    replay_lsn: int | None = None
    lag_bytes: int | None = None
    lag_seconds: float | None = None
    detail: str | None = None  # why it is skipped


@dataclass(frozen=True, slots=True)
class ReadTarget:
    """Where one read runs: a replica, or the primary."""

    name: str
    sessions: sessionmaker[Session]

    @property
    def is_replica(self) -> bool:
        return self.name != PRIMARY


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0]


class ReadRouter:
    def __init__(
        self,
        primary: Engine,
        replicas: Mapping[str, Engine],
        *,
        max_lag_seconds: float,
        primary_sessions: sessionmaker[Session] | None = None,
        catch_up_seconds: float = DEFAULT_CATCH_UP_SECONDS,
    ) -> None:
        self._max_lag = max_lag_seconds
        self._catch_up = catch_up_seconds
        self.counts = ReadCounts()
        self.primary = ReadTarget(PRIMARY, primary_sessions or make_session_factory(primary))
        self._primary_engine = primary
        # Every replica read first asks the primary for the newest succeeded position: on
        # connections of their own, in autocommit and without the pool's pre-ping, that is
        # one round trip instead of three (ping, query, rollback). A connection the
        # primary dropped fails once and is replaced (`required_lsn` retries).
        self._probe = create_engine(
            primary.url, pool_size=4, max_overflow=8, isolation_level="AUTOCOMMIT"
        )
        self._engines = dict(replicas)
        for engine in replicas.values():
            event.listen(engine, "begin", _record_position)
        # The plan's catch-up check: a replica's position, in autocommit on its own pool.
        self._positions = {
            n: e.execution_options(isolation_level="AUTOCOMMIT") for n, e in replicas.items()
        }
        self.replicas = [ReadTarget(n, make_session_factory(e)) for n, e in replicas.items()]
        self._lock = threading.Lock()
        # Unknown until the first refresh: skipped, as a replica may not be ready yet.
        self._status = {n: ReplicaStatus(n, False, detail="not checked yet") for n in replicas}
        self._primary_history: deque[tuple[float, int]] = deque(maxlen=_HISTORY)
        self._required = 0  # the last newest-succeeded position the primary gave
        self._turn = itertools.count()
        # Asks the primary for the newest succeeded position while a read runs.
        self._probes = ThreadPoolExecutor(4, thread_name_prefix="required-lsn")

    def statuses(self) -> list[ReplicaStatus]:
        with self._lock:
            return [self._status[t.name] for t in self.replicas]

    def refresh(self) -> None:
        """Measure every replica against the primary's current WAL position."""
        primary_lsn = self._primary_lsn()
        for target in self.replicas:
            self._set(self._measure(target.name, primary_lsn))

    def _primary_lsn(self) -> int | None:
        try:
            with self._primary_engine.connect() as connection:
                # Flushed, not merely written: a standby is sent only flushed WAL, and
                # with asynchronous commit the written position can stay a few bytes past
                # it on an idle primary, which would age an idle replica out of reads.
                value = connection.execute(
                    text("SELECT pg_current_wal_flush_lsn()::text")
                ).scalar_one()
        except OperationalError as exc:
            log.warning("replica_check_primary_unreachable error=%s", _first_line(exc))
            return None
        lsn = parse_lsn(str(value))
        with self._lock:
            self._primary_history.append((time.monotonic(), lsn))
        return lsn

    def _measure(self, name: str, primary_lsn: int | None) -> ReplicaStatus:
        try:
            with self._engines[name].connect() as connection:
                recovering, replay, replay_age = connection.execute(
                    text(
                        "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text, "
                        "EXTRACT(EPOCH FROM clock_timestamp() - pg_last_xact_replay_timestamp())"
                    )
                ).one()
        except OperationalError as exc:
            return ReplicaStatus(name, False, detail=f"unreachable: {_first_line(exc)}")
        if not recovering or replay is None:
            return ReplicaStatus(name, False, detail="not a standby (not in recovery)")
        replayed = parse_lsn(str(replay))
        lag_bytes = None if primary_lsn is None else max(0, primary_lsn - replayed)
        lag = self._lag_seconds(
            replayed, lag_bytes, None if replay_age is None else float(replay_age)
        )
        healthy = lag is not None and lag <= self._max_lag
        detail = None if healthy else f"lag {lag if lag is not None else 'unknown'} s"
        return ReplicaStatus(name, healthy, replayed, lag_bytes, lag, detail)

    def _lag_seconds(
        self, replayed: int, lag_bytes: int | None, replay_age: float | None
    ) -> float | None:
        """How old the oldest change the replica lacks can be: 0 when it has everything
        the primary had just before; else the smaller of two upper bounds, the age of its
        last replayed commit and the time since the newest primary sample it has reached."""
        if lag_bytes == 0:
            return 0.0
        bounds = [] if replay_age is None else [max(0.0, replay_age)]
        with self._lock:
            reached = [at for at, lsn in self._primary_history if lsn <= replayed]
        if reached:
            bounds.append(time.monotonic() - max(reached))
        return min(bounds) if bounds else None

    def _set(self, status: ReplicaStatus) -> None:
        with self._lock:
            before = self._status.get(status.name)
            self._status[status.name] = status
        if before is None or before.healthy != status.healthy:
            log.info(
                "replica_%s replica=%s detail=%s",
                "healthy" if status.healthy else "skipped",
                status.name,
                status.detail,
            )

    def required_lsn(self) -> int:
        """The newest succeeded attempt's position, from the primary; while the primary
        cannot be read, the last one it gave (replicas still serve what they have)."""
        for last_try in (False, True):
            try:
                with self._probe.connect() as connection:
                    value = newest_succeeded_lsn(connection)
                break
            except OperationalError as exc:
                if last_try:
                    log.warning("required_lsn_unavailable error=%s", _first_line(exc))
                    return self._required
        self._required = 0 if value is None else parse_lsn(value)
        return self._required

    def _replayed_now(self, target: ReadTarget) -> int | None:
        try:
            with self._positions[target.name].connect() as connection:
                value = connection.execute(_REPLAYED).scalar_one()
        except OperationalError as exc:
            self.mark_down(target, exc)
            return None
        return None if value is None else parse_lsn(str(value))

    def plan(self, required: int | None = None) -> list[ReadTarget]:
        """Where to read, in order: healthy replicas that have replayed every succeeded
        attempt (taking turns), then the primary. `required`: the primary's newest
        succeeded position when the caller has just asked for it."""
        if not self.replicas:
            return [self.primary]
        if required is None:
            required = self.required_lsn()
        chosen = []
        for target, known in self._healthy_in_turn():
            if (known.replay_lsn or 0) >= required:
                chosen.append(target)
                continue
            replayed = self._replayed_now(target)
            if replayed is not None and replayed >= required:
                chosen.append(target)
        return [*chosen, self.primary]

    def mark_down(self, target: ReadTarget, exc: BaseException) -> None:
        """Skip a replica that failed a read until the next refresh finds it well."""
        self._set(ReplicaStatus(target.name, False, detail=f"failed a read: {_first_line(exc)}"))

    def run(self, read: Callable[[ReadTarget], T]) -> T:
        """`read` on a healthy replica, the primary's newest succeeded position asked for
        meanwhile (module docstring); when a transaction of it ran on a server that had not
        replayed so far, or the replica failed, on the first target of the plan, where a
        replica's connection failure (or a query cancelled by replay) moves on to the
        next, then the primary, whose own failure is the caller's."""
        healthy = self._healthy_in_turn() if self.replicas else []
        if not healthy:
            # The primary alone: its newest succeeded position would choose nothing (a
            # probe connection and a round trip saved on every read of a single server).
            return self._on_primary(read)
        target, status = healthy[0]
        # A replica known to lag past the wait would only make the read wait in vain.
        wait = self._catch_up if (status.lag_seconds or 0.0) <= self._catch_up else 0.0
        required = self._probes.submit(self.required_lsn)
        try:
            result, lowest = self._replica_read(target, read, required, wait)
        except OperationalError as exc:
            self._read_failed(target, exc)
        else:
            if lowest >= required.result():
                self.counts.read(target.name, ReadOutcome.SERVED)
                return result
            self.counts.read(target.name, ReadOutcome.BEHIND)
        # The position just asked for stands for the plan too: no second probe.
        return self._run_planned(read, required.result())

    def _on_primary(self, read: Callable[[ReadTarget], T]) -> T:
        result = read(self.primary)  # its failure is the caller's, not counted here
        self.counts.read(self.primary.name, ReadOutcome.SERVED)
        return result

    def _replica_read(
        self,
        target: ReadTarget,
        read: Callable[[ReadTarget], T],
        required: Future[int],
        wait: float,
    ) -> tuple[T, float]:
        """`read`'s result and the lowest position its transactions' servers had replayed
        when each began, each having waited up to `wait` seconds for `required` (infinite
        when none ran, or each ran on a server not in recovery)."""
        current = _ReplicaRead(target.name, required, wait, self.counts)
        token = _READ.set(current)
        try:
            result = read(target)
        finally:
            _READ.reset(token)
        known = [p for p in current.positions if p is not None]
        return result, (min(known) if known else float("inf"))

    def _healthy_in_turn(self) -> list[tuple[ReadTarget, ReplicaStatus]]:
        """The healthy replicas by the last refresh, starting from the next in turn."""
        start = next(self._turn) % len(self.replicas)
        with self._lock:
            status = dict(self._status)
        ordered = self.replicas[start:] + self.replicas[:start]
        return [(t, status[t.name]) for t in ordered if status[t.name].healthy]

    def _read_failed(self, target: ReadTarget, exc: OperationalError) -> None:
        log.warning("replica_read_failed replica=%s error=%s", target.name, _first_line(exc))
        self.counts.read(target.name, ReadOutcome.FAILED)
        self.mark_down(target, exc)

    def _run_planned(self, read: Callable[[ReadTarget], T], required: int) -> T:
        known: Future[int] = Future()
        known.set_result(required)
        for target in self.plan(required):
            if not target.is_replica:
                return self._on_primary(read)
            try:
                result, lowest = self._replica_read(target, read, known, self._catch_up)
            except OperationalError as exc:
                self._read_failed(target, exc)
                continue
            if lowest >= required:
                self.counts.read(target.name, ReadOutcome.SERVED)
                return result
            self.counts.read(target.name, ReadOutcome.BEHIND)
        raise AssertionError("the plan always ends with the primary")

    def dispose(self) -> None:
        self._probes.shutdown(wait=True)
        self._probe.dispose()
        for engine in self._engines.values():
            engine.dispose()


class ReplicaMonitor:
    """Refreshes a router every `interval` seconds in a daemon thread."""

    def __init__(self, router: ReadRouter, interval: float) -> None:
        self._router = router
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="replica-monitor", daemon=True)

    def start(self) -> None:
        self._router.refresh()  # replicas serve from the first request on, when well
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._router.refresh()


def replica_names(urls: Iterable[str]) -> list[str]:
    """`replica-1`, `replica-2`, ... in the order the URLs are given (never the URLs:
    they hold passwords)."""
    return [f"replica-{n}" for n, _ in enumerate(urls, 1)]
