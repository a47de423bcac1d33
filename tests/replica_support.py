"""A real PostgreSQL primary and one hot standby of it on loopback, for the replica tests:
the standby runs as a child the test can SIGKILL and start again."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import psycopg

from tandem.db.migrate import upgrade
from tandem.db.session import make_engine
from tandem.local.services import privileges
from tandem.local.services.child import serving_child
from tandem.local.services.postgres import SHUTDOWN_SIGNAL, THROWAWAY_SETTINGS, LocalPostgres
from tandem.local.services.postgres_replica import LocalStandby, standby_of
from tandem.local.services.process import stop
from tests.support import free_port


@dataclass
class Replication:
    primary: LocalPostgres
    standby: LocalStandby
    process: subprocess.Popen[bytes] | None = field(default=None)

    def start_standby(self) -> None:
        self.standby.prepare()
        self.process = subprocess.Popen(
            self.standby.argv(),
            cwd=self.standby.data_dir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=partial(privileges.set_parent_death_signal, SHUTDOWN_SIGNAL),
        )
        self.standby.wait_ready(60.0, self.process)

    def kill_standby(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def stop_standby(self) -> None:
        if self.process is not None:
            stop(self.process, SHUTDOWN_SIGNAL, 30.0)

    def primary_sql(self, statement: str, *params: Any) -> list[tuple[Any, ...]]:
        return _sql(self.primary, statement, params)

    def standby_sql(self, statement: str, *params: Any) -> list[tuple[Any, ...]]:
        return _sql(self.standby, statement, params)

    def wait_replayed(self, timeout: float = 30.0, *, target: str | None = None) -> None:
        """Until the standby has replayed `target`, by default everything the primary had
        written (with asynchronous commit that can be short of what it has inserted)."""
        if target is None:
            (target,) = self.primary_sql("SELECT pg_current_wal_lsn()::text")[0]
        wait_replayed(self.standby, target, timeout)


def lsn_text(lsn: int) -> str:
    """A byte position as PostgreSQL writes it (`parse_lsn`'s inverse)."""
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def wait_replayed(server: LocalPostgres, target: str, timeout: float = 30.0) -> None:
    """Until the standby `server` has replayed the WAL position `target`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        (done,) = _sql(server, "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (target,))[0]
        if done:
            return
        time.sleep(0.05)
    raise AssertionError(f"{server.data_dir.name} did not replay to {target}")


def _sql(server: LocalPostgres, statement: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    with psycopg.connect(server.conninfo(), autocommit=True) as connection:
        cursor = connection.execute(statement, params)
        return cursor.fetchall() if cursor.description else []


@contextmanager
def replication(
    scratch: Path, settings: Mapping[str, str] = THROWAWAY_SETTINGS
) -> Iterator[Replication]:
    """A migrated primary (by default fsync off: throwaway) and its running standby, both
    with `settings`."""
    primary = LocalPostgres(scratch / "postgres", free_port(), settings=dict(settings))
    primary.prepare()
    with serving_child(primary, SHUTDOWN_SIGNAL, 60.0):
        primary.ensure_database()
        engine = make_engine(primary.url())
        upgrade(engine)
        engine.dispose()
        pair = Replication(
            primary, standby_of(primary, scratch / "postgres-replica-1", free_port())
        )
        pair.start_standby()
        try:
            yield pair
        finally:
            pair.stop_standby()
