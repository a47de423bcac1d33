"""Helpers for tests that run real model-server processes on loopback."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, make_url, text

from tandem.db.session import normalize_url
from tandem.local.services.privileges import set_parent_death_signal
from tandem.local.services.process import ServiceError, wait_http_ready
from tandem.local.services.process import free_port as free_port
from tandem.local.services.process import stop as stop_process


def die_with_pytest() -> None:
    """preexec_fn for every process a test starts: the kernel sends it SIGTERM when pytest
    dies (killed, or Ctrl-C twice), so no server outlives the run (Linux; no-op elsewhere).
    The signal follows the *thread* that started the child: start servers from the main
    thread, or from a thread that outlives them."""
    set_parent_death_signal(signal.SIGTERM)


def spawn(
    argv: list[str], env: dict[str, str], log_path: Path, *, append: bool = False
) -> subprocess.Popen[bytes]:
    """A test's server process: output to `log_path`, tied to pytest's life."""
    return subprocess.Popen(
        argv,
        env=env,
        stdout=log_path.open("ab" if append else "wb"),
        stderr=subprocess.STDOUT,
        preexec_fn=die_with_pytest,
    )


@contextmanager
def service_dir(prefix: str) -> Iterator[Path]:
    """A scratch directory for a server that drops root privileges (PostgreSQL), outside
    pytest's temporary root: every pytest session, another one running at the same time
    included, makes that root private again (mode 0700), which locks the unprivileged
    server out of its own data directory mid-run."""
    path = Path(tempfile.mkdtemp(prefix=f"tandem-test-{prefix}-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextmanager
def scratch_database(postgres_url: str, name: str) -> Iterator[str]:
    """A database of its own on the session's PostgreSQL, made anew (a test run that died
    may have left one of that name) and dropped after, its sessions ended: its URL."""
    admin = create_engine(normalize_url(postgres_url), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        url = make_url(normalize_url(postgres_url)).set(database=name)
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@dataclass
class ServerProcess:
    process: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 30.0) -> int:
        return stop_process(self.process, signal.SIGTERM, timeout)


def wait_ready(server: ServerProcess, timeout: float = 90.0, path: str = "/api/ready") -> None:
    """Until `GET path` answers 200; a test failure with the server's log tail otherwise."""
    url = f"{server.url}{path}"
    try:
        wait_http_ready(url, url, timeout, server.process, log_path=server.log_path)
    except ServiceError as exc:
        raise AssertionError(str(exc)) from exc


def start_model_server(
    role: str | None,
    log_dir: Path,
    env: dict[str, str] | None = None,
    *,
    wait: bool = True,
    port: int | None = None,
) -> ServerProcess:
    """Start `tandem model-server`; with no role, the environment (INDEXING_ONLY) decides."""
    port = port or free_port()
    log_path = log_dir / f"{role or 'env'}-{port}.log"
    argv = [sys.executable, "-m", "tandem.cli", "model-server"]
    ports = {"MODEL_SERVER_PORT": str(port), "INDEXING_MODEL_SERVER_PORT": str(port)}
    if role is not None:
        argv += ["--role", role]
    process = spawn(argv, os.environ | ports | (env or {}), log_path)
    server = ServerProcess(process, f"http://127.0.0.1:{port}", log_path)
    if wait:
        try:
            wait_ready(server)
        except AssertionError:
            server.stop()
            raise
    return server


@contextmanager
def model_server(
    role: str | None, log_dir: Path, env: dict[str, str] | None = None
) -> Iterator[ServerProcess]:
    server = start_model_server(role, log_dir, env)
    try:
        yield server
    finally:
        server.stop()
