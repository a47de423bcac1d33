"""A hot standby of the local PostgreSQL: `pg_basebackup -R` of the primary, then the
same embedded `postgres` binary replaying its WAL over streaming replication.

The standby is a copy of the primary's cluster, roles and passwords included: it is
reached with the primary's superuser password (kept beside the primary's data directory),
and the primary's `pg_hba.conf` already lets that user replicate over loopback. Each
standby has its own replication slot, so the primary keeps the WAL a stopped standby
still needs and it catches up when it starts again.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg

from tandem.local.services import credentials, privileges
from tandem.local.services.child import serving_child
from tandem.local.services.postgres import (
    MAINTENANCE_DB,
    SHUTDOWN_SIGNAL,
    SUPERUSER,
    LocalPostgres,
    install_dir,
)
from tandem.local.spec import ServiceSpec, tandem_command

log = logging.getLogger(__name__)

# Replay need not wait for reads; feedback keeps the primary's vacuum from removing rows
# a standby's running search still reads (which would cancel that search).
STANDBY_SETTINGS: Mapping[str, str] = {"hot_standby": "on", "hot_standby_feedback": "on"}


REPLICA_PREFIX = "postgres-replica-"


def replica_name(number: int) -> str:
    """The service's and data directory's name, e.g. `postgres-replica-1`."""
    return f"{REPLICA_PREFIX}{number}"


def slot_name(data_dir: Path) -> str:
    """The primary's replication slot for the standby in `data_dir`."""
    return "tandem_" + "".join(c if c.isalnum() else "_" for c in data_dir.name.lower())


@dataclass(frozen=True)
class LocalStandby(LocalPostgres):
    """A standby in `data_dir` of the primary served from `primary_dir` on `primary_port`."""

    primary_dir: Path = Path()
    primary_port: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "primary_dir", self.primary_dir.resolve())
        settings = {**STANDBY_SETTINGS, "cluster_name": self.data_dir.name, **self.settings}
        object.__setattr__(self, "settings", settings)

    def password(self) -> str:
        # The primary's: the standby's roles are the primary's own.
        return credentials.read_or_create(credentials.password_file(self.primary_dir))

    def primary(self) -> LocalPostgres:
        return LocalPostgres(self.primary_dir, self.primary_port, self.host)

    def prepare(self) -> None:
        """Copy the primary, if this standby has never been made (the primary must run);
        an existing standby just starts and catches up."""
        owner = self.run_as()
        if (self.data_dir / "PG_VERSION").exists():
            return
        if self.data_dir.exists():
            shutil.rmtree(self.data_dir)  # a half-made copy: start again
        privileges.claim_dir(self.data_dir, owner)
        if owner is not None:
            privileges.grant_traverse(self.data_dir)
        if self.socket_dir() != self.data_dir:
            privileges.claim_dir(self.socket_dir(), owner)
        self._drop_stale_slot()
        self._base_backup(owner)

    def _drop_stale_slot(self) -> None:
        """A slot left by an earlier copy of this standby (its directory was deleted)
        would make the primary keep WAL for nobody, and the new copy cannot reuse it."""
        with psycopg.connect(self.primary().conninfo(MAINTENANCE_DB), autocommit=True) as admin:
            admin.execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                "WHERE slot_name = %s AND NOT active",
                (slot_name(self.data_dir),),
            )

    def _base_backup(self, owner: privileges.SystemUser | None) -> None:
        argv = [
            str(install_dir() / "bin" / "pg_basebackup"),
            *("-D", str(self.data_dir)),
            *("-h", self.host or "127.0.0.1"),
            *("-p", str(self.primary_port)),
            *("-U", SUPERUSER),
            "--no-password",  # from PGPASSWORD, so it is never in a process listing
            "--write-recovery-conf",  # standby.signal + primary_conninfo
            "--wal-method=stream",
            "--checkpoint=fast",
            "--create-slot",
            f"--slot={slot_name(self.data_dir)}",
        ]
        if self.settings.get("fsync") == "off":
            argv.append("--no-sync")
        log.info(
            "postgres_base_backup data_dir=%s primary_port=%d", self.data_dir, self.primary_port
        )
        env = {**os.environ, "PGPASSWORD": self.password()}
        privileges.run_tool("pg_basebackup", argv, owner, cwd=self.data_dir, env=env)


def standby_of(primary: LocalPostgres, data_dir: Path, port: int) -> LocalStandby:
    return LocalStandby(
        data_dir,
        port,
        primary.host,
        settings=dict(primary.settings),
        primary_dir=primary.data_dir,
        primary_port=primary.port,
    )


@contextmanager
def running_standby(
    primary: LocalPostgres, data_dir: Path, port: int, timeout: float = 60.0
) -> Iterator[LocalStandby]:
    """A standby of the running `primary` as a child process while the block runs."""
    standby = standby_of(primary, data_dir, port)
    standby.prepare()
    with serving_child(standby, SHUTDOWN_SIGNAL, timeout):
        yield standby


def service_spec(standby: LocalStandby) -> ServiceSpec:
    """For `tandem up`: copy the primary once, then run in the foreground."""
    argv = tandem_command(
        "services",
        "postgres-replica",
        *("--data-dir", str(standby.data_dir)),
        *("--port", str(standby.port)),
        *("--primary-data-dir", str(standby.primary_dir)),
        *("--primary-port", str(standby.primary_port)),
    )
    return ServiceSpec(name=standby.data_dir.name, argv=argv, stop_signal=SHUTDOWN_SIGNAL)
