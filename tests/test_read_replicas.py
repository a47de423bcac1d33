"""Reads from a hot standby (tandem.db.replicas) against a real primary and standby on
loopback: the standby's set-up and teardown, routing by replayed WAL position, the lag
bound, and a standby SIGKILLed and started again."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from tandem.db import attempts
from tandem.db.read_counts import ReadOutcome
from tandem.db.replicas import PRIMARY, ReadRouter, ReadTarget, parse_lsn
from tandem.db.session import make_engine, make_session_factory
from tandem.local.services.postgres import LocalPostgres
from tandem.local.services.postgres_replica import running_standby, slot_name
from tests.replica_support import Replication, lsn_text, replication, wait_replayed
from tests.support import free_port, service_dir

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pair() -> Iterator[Replication]:
    with service_dir("replicas") as scratch, replication(scratch) as running:
        yield running


@pytest.fixture
def max_lag_seconds() -> float:
    return 1.0


@pytest.fixture
def router(pair: Replication, max_lag_seconds: float) -> Iterator[ReadRouter]:
    pair.standby_sql("SELECT pg_wal_replay_resume()")
    primary = make_engine(pair.primary.url())
    routed = ReadRouter(
        primary,
        {"replica-1": make_engine(pair.standby.url(), connect_timeout=2)},
        max_lag_seconds=max_lag_seconds,
    )
    pair.wait_replayed()
    routed.refresh()
    yield routed
    routed.dispose()
    primary.dispose()
    pair.standby_sql("SELECT pg_wal_replay_resume()")


def _served_by(target: ReadTarget) -> str:
    with target.sessions() as session:
        recovering = session.execute(text("SELECT pg_is_in_recovery()")).scalar_one()
    return target.name if recovering else PRIMARY


def _succeed_an_attempt(pair: Replication) -> int:
    """An attempt whose one item finished: the real path that records its WAL position."""
    sessions = make_session_factory(make_engine(pair.primary.url()))
    with sessions.begin() as session:
        attempt, (item_id,) = attempts.create_attempt(
            session, [attempts.ItemToQueue("doc", "doc.txt", b"text")]
        )
    attempts.finish_item(sessions, item_id, chunk_count=1)
    with sessions() as session:
        lsn = session.execute(
            text("SELECT succeeded_lsn::text FROM index_attempts WHERE id = :id"),
            {"id": attempt.id},
        ).scalar_one()
    return parse_lsn(lsn)


def test_a_standby_is_copied_streams_and_stops(pair: Replication) -> None:
    data_dir = pair.standby.data_dir.with_name("postgres-replica-2")
    with running_standby(pair.primary, data_dir, free_port()) as second:
        rows = pair.primary_sql(
            "SELECT application_name, state FROM pg_stat_replication ORDER BY 1"
        )
        assert ("postgres-replica-2", "streaming") in rows
        pair.primary_sql("CREATE TABLE IF NOT EXISTS copied (x int)")
        pair.primary_sql("INSERT INTO copied VALUES (1)")
        _wait_rows(second, 1)
        assert second.password() == pair.primary.password()
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            _ = _sql_on(second, "INSERT INTO copied VALUES (2)")
    # Stopped: the primary keeps its slot (and WAL) for it. The walsender notices the
    # standby has gone a moment after it exits, so the slot turns inactive soon, not at once.
    deadline = time.monotonic() + 30
    query = "SELECT active FROM pg_replication_slots WHERE slot_name = %s"
    while (slots := pair.primary_sql(query, slot_name(data_dir))) != [(False,)]:
        assert slots == [(True,)], slots  # the slot itself is never dropped
        assert time.monotonic() < deadline, "the stopped standby's slot stayed active"
        time.sleep(0.1)
    pair.primary_sql("INSERT INTO copied VALUES (3)")
    with running_standby(pair.primary, data_dir, free_port()) as again:
        _wait_rows(again, 2)  # the row written while it was down


def _wait_rows(server: object, count: int) -> None:
    deadline = time.monotonic() + 30
    while _sql_on(server, "SELECT count(*) FROM copied") != [(count,)]:
        assert time.monotonic() < deadline, f"the standby did not replay to {count} rows"
        time.sleep(0.1)


def _sql_on(server: object, statement: str) -> list[tuple[object, ...]]:
    import psycopg

    assert isinstance(server, LocalPostgres)
    with psycopg.connect(server.conninfo(), autocommit=True) as connection:
        try:
            return connection.execute(statement).fetchall()
        except psycopg.errors.UndefinedTable:
            return []  # not replayed yet


def test_reads_go_to_a_caught_up_replica(router: ReadRouter) -> None:
    assert [t.name for t in router.plan()] == ["replica-1", PRIMARY]
    assert router.run(_served_by) == "replica-1"
    (status,) = router.statuses()
    assert status.healthy
    assert status.lag_bytes == 0
    assert status.lag_seconds == 0.0


def test_the_primary_is_asked_for_the_position_while_the_replica_reads(
    router: ReadRouter, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked = router.required_lsn

    def slow_primary() -> int:
        time.sleep(0.4)  # a busy primary
        return asked()

    def slow_read(target: ReadTarget) -> str:
        time.sleep(0.4)
        return _served_by(target)

    monkeypatch.setattr(router, "required_lsn", slow_primary)
    started = time.monotonic()
    assert router.run(slow_read) == "replica-1"
    # One after the other would take 0.8 s: the primary's round trip is off the read's path.
    assert time.monotonic() - started < 0.7


# A bound the paused standby stays within however slow the machine is while the attempt
# is written: only the attempt's position may rule the replica out.
@pytest.mark.parametrize("max_lag_seconds", [60.0])
def test_a_replica_behind_the_newest_succeeded_attempt_is_not_read(
    pair: Replication, router: ReadRouter
) -> None:
    pair.standby_sql("SELECT pg_wal_replay_pause()")
    lsn = _succeed_an_attempt(pair)
    router.refresh()
    assert router.statuses()[0].healthy  # within the lag bound: only the position rules it out
    assert router.required_lsn() == lsn
    assert router.run(_served_by) == PRIMARY
    # Read on the replica first (it was healthy), found behind, read again on the primary.
    assert router.counts.snapshot().reads == {
        ("replica-1", ReadOutcome.BEHIND): 1,
        (PRIMARY, ReadOutcome.SERVED): 1,
    }
    pair.standby_sql("SELECT pg_wal_replay_resume()")
    # The attempt's own position: with asynchronous commit the primary may not have
    # written that far yet when replay resumes.
    pair.wait_replayed(target=lsn_text(lsn))
    router.refresh()
    assert router.run(_served_by) == "replica-1", router.statuses()


@pytest.mark.parametrize("max_lag_seconds", [60.0])
def test_a_read_waits_for_a_replica_a_moment_behind_and_is_served_there(
    pair: Replication, max_lag_seconds: float
) -> None:
    primary = make_engine(pair.primary.url())
    router = ReadRouter(
        primary,
        {"replica-1": make_engine(pair.standby.url(), connect_timeout=2)},
        max_lag_seconds=max_lag_seconds,
        catch_up_seconds=30.0,  # however slow the machine: the wait, not its bound, ends it
    )
    try:
        pair.standby_sql("SELECT pg_wal_replay_resume()")
        pair.wait_replayed()
        router.refresh()  # caught up and healthy: a read there may wait for its replay
        pair.standby_sql("SELECT pg_wal_replay_pause()")
        _succeed_an_attempt(pair)
        resume = threading.Timer(0.3, pair.standby_sql, ("SELECT pg_wal_replay_resume()",))
        resume.start()
        started = time.monotonic()
        assert router.run(_served_by) == "replica-1"
        assert time.monotonic() - started >= 0.25  # it waited for the replay
        counts = router.counts.snapshot()
        assert counts.reads == {("replica-1", ReadOutcome.SERVED): 1}
        assert counts.catch_up_waits == {"replica-1": 1}
        assert counts.catch_up_seconds["replica-1"] >= 0.25
        resume.join()
    finally:
        router.dispose()
        primary.dispose()
        pair.standby_sql("SELECT pg_wal_replay_resume()")


@pytest.mark.parametrize(
    ("inserted", "end"),
    [
        ("0/3000028", "0/3000000"),  # a segment's first page: past its long header
        ("0/3002018", "0/3002000"),  # another page: past its short header
        ("0/3002020", "0/3002020"),  # a record began there: the position stands
        ("1/0", "1/0"),
    ],
)
def test_the_recorded_position_is_an_end_of_wal_a_standby_reaches(
    pair: Replication, inserted: str, end: str
) -> None:
    with make_engine(pair.primary.url()).connect() as connection:
        assert attempts.wal_end(connection, inserted) == end


def test_an_idle_replica_that_has_everything_stays_read_past_the_lag_bound(
    pair: Replication, router: ReadRouter
) -> None:
    # Asynchronous commit (as the local stack runs): the primary's written WAL may stay a
    # few bytes past what it has flushed and sent, and an idle standby never gets them.
    pair.primary_sql("CREATE TABLE IF NOT EXISTS ticks (at timestamptz)")
    pair.primary_sql("INSERT INTO ticks VALUES (now())")
    pair.wait_replayed()
    deadline = time.monotonic() + 2.5  # past the 1 s bound, with nothing written since
    while time.monotonic() < deadline:
        router.refresh()
        (status,) = router.statuses()
        assert status.healthy, status
        time.sleep(0.25)
    assert status.lag_bytes == 0 and status.lag_seconds == 0.0, status


def test_lag_past_the_bound_skips_the_replica_until_it_catches_up(
    pair: Replication, router: ReadRouter
) -> None:
    pair.standby_sql("SELECT pg_wal_replay_pause()")
    pair.primary_sql("CREATE TABLE IF NOT EXISTS ticks (at timestamptz)")
    pair.primary_sql("INSERT INTO ticks VALUES (now())")
    router.refresh()  # a primary position the standby never reaches while paused
    time.sleep(1.5)
    router.refresh()
    (status,) = router.statuses()
    assert not status.healthy
    assert status.lag_seconds is not None and status.lag_seconds > 1.0
    assert status.lag_bytes is not None and status.lag_bytes > 0
    assert [t.name for t in router.plan()] == [PRIMARY]
    pair.standby_sql("SELECT pg_wal_replay_resume()")
    pair.wait_replayed()
    router.refresh()
    assert router.statuses()[0].healthy
    assert router.run(_served_by) == "replica-1"


def test_a_killed_standby_fails_no_read_and_serves_again_once_restarted(
    pair: Replication, router: ReadRouter
) -> None:
    assert router.run(_served_by) == "replica-1"  # a pooled connection to the standby
    pair.kill_standby()
    try:
        served = [router.run(_served_by) for _ in range(20)]
        assert served == [PRIMARY] * 20
        router.refresh()
        assert not router.statuses()[0].healthy
    finally:
        pair.start_standby()
    pair.wait_replayed()
    router.refresh()
    assert router.statuses()[0].healthy
    assert router.run(_served_by) == "replica-1"


def test_tandem_up_runs_a_standby_as_a_service_that_stops_on_sigint(pair: Replication) -> None:
    """The command `tandem up` supervises (`tandem services postgres-replica`)."""
    import signal
    import subprocess
    import sys

    from tandem.local.services.postgres_replica import service_spec, standby_of

    standby = standby_of(
        pair.primary, pair.standby.data_dir.with_name("postgres-replica-3"), free_port()
    )
    spec = service_spec(standby)
    assert spec.name == "postgres-replica-3"
    assert spec.argv[:3] == [sys.executable, "-m", "tandem.cli"]
    process = subprocess.Popen(spec.argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        standby.wait_ready(60.0, process)
        assert _sql_on(standby, "SELECT pg_is_in_recovery()") == [(True,)]
    finally:
        process.send_signal(spec.stop_signal)
        assert process.wait(30) == 0
    assert spec.stop_signal == signal.SIGINT


def test_a_replica_url_that_reaches_two_standbys_reads_every_succeeded_attempt(
    pair: Replication,
) -> None:
    """One replica URL whose connections reach different standbys, as a load-balancing
    Service does (CloudNativePG's `-ro`): here each new connection goes to the other of two
    standbys, one of them paused behind a succeeded attempt. Every read, two transactions
    like a hybrid search's, sees the attempt, whichever standbys its connections reach;
    once the paused one catches up, reads stay on the standbys."""
    pair.standby_sql("SELECT pg_wal_replay_resume()")
    data_dir = pair.standby.data_dir.parent / "postgres-replica-lb"
    with running_standby(pair.primary, data_dir, free_port()) as behind:
        servers = itertools.cycle([pair.standby, behind])
        balanced = create_engine(
            "postgresql+psycopg://",
            creator=lambda: psycopg.connect(next(servers).conninfo()),
            poolclass=NullPool,  # a connection per transaction: each one alternates
        )
        primary = make_engine(pair.primary.url())
        router = ReadRouter(primary, {"replica-1": balanced}, max_lag_seconds=60.0)
        try:
            _sql_on(behind, "SELECT pg_wal_replay_pause()")
            lsn = _succeed_an_attempt(pair)
            wait_replayed(pair.standby, lsn_text(lsn))
            router.refresh()
            assert router.statuses()[0].healthy
            (expected,) = pair.primary_sql("SELECT count(*) FROM index_attempts")[0]

            def counts(target: ReadTarget) -> list[tuple[int, bool]]:
                seen = []
                for _ in range(2):
                    with target.sessions() as session:
                        row = session.execute(
                            text("SELECT count(*), pg_is_in_recovery() FROM index_attempts")
                        ).one()
                        seen.append((int(row[0]), bool(row[1])))
                return seen

            for _ in range(6):
                assert [n for n, _ in router.run(counts)] == [expected, expected]
            _sql_on(behind, "SELECT pg_wal_replay_resume()")
            wait_replayed(behind, lsn_text(lsn))
            for _ in range(6):
                assert router.run(counts) == [(expected, True), (expected, True)]
        finally:
            router.dispose()
            primary.dispose()


def test_a_router_without_a_healthy_replica_reads_the_primary_without_asking_its_position(
    pair: Replication, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The newest succeeded position only chooses among replicas: with none configured,
    or none healthy, each read costs no probe of the primary."""
    primary = make_engine(pair.primary.url())
    alone = ReadRouter(primary, {}, max_lag_seconds=1.0)
    down = ReadRouter(
        primary,
        {"replica-1": make_engine(pair.standby.url(), connect_timeout=2)},
        max_lag_seconds=1.0,
    )

    def no_probe() -> int:
        raise AssertionError("the primary's position was asked for")

    try:
        for routed in (alone, down):  # `down` never refreshed: its replica is not healthy yet
            monkeypatch.setattr(routed, "required_lsn", no_probe)
            assert routed.run(_served_by) == PRIMARY
            assert routed.counts.snapshot().reads == {(PRIMARY, ReadOutcome.SERVED): 1}
    finally:
        alone.dispose()
        down.dispose()
        primary.dispose()
