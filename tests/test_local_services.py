"""Real local PostgreSQL (pgvector) and Redis servers: start, use, stop, restart."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg
import pytest
import redis
import sqlalchemy as sa

from tandem.local.launcher import Stack
from tandem.local.services import postgres as local_postgres
from tandem.local.services import redis as local_redis
from tandem.local.services.postgres import (
    SYSTEM_USER,
    THROWAWAY_SETTINGS,
    LocalPostgres,
    running_postgres,
)
from tandem.local.services.privileges import is_root
from tandem.local.services.redis import LocalRedis, running_redis
from tests.support import free_port

pytestmark = pytest.mark.slow


def conninfo(url: str) -> str:
    """The psycopg form of the SQLAlchemy URL the context manager yields."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def assert_stopped(pid: int, port: int) -> None:
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def postmaster_pid(data_dir: Path) -> int:
    return int((data_dir / "postmaster.pid").read_text().splitlines()[0])


def test_postgres_pgvector_hnsw_and_restart(pg_tmp_path: Path) -> None:
    data_dir, port = pg_tmp_path / "pg", free_port()
    with running_postgres(data_dir, port, THROWAWAY_SETTINGS) as url:
        password = LocalPostgres(data_dir, port).password()
        assert url == f"postgresql+psycopg://postgres:{password}@127.0.0.1:{port}/tandem"
        pid = postmaster_pid(data_dir)
        with psycopg.connect(conninfo(url)) as conn:
            version = conn.execute(
                "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
            ).fetchone()
            assert version is not None
            assert version[0]
            conn.execute("CREATE TABLE passages (id int PRIMARY KEY, embedding vector(3))")
            conn.execute(
                "CREATE INDEX passages_hnsw ON passages USING hnsw (embedding vector_cosine_ops)"
            )
            conn.execute(
                "INSERT INTO passages VALUES (1, '[1,0,0]'), (2, '[0,1,0]'), (3, '[0.9,0.1,0]')"
            )
    assert_stopped(pid, port)
    # A fast shutdown removes the pid file; a crash or SIGKILL would leave it behind.
    assert not (data_dir / "postmaster.pid").exists()

    with running_postgres(data_dir, port, THROWAWAY_SETTINGS) as url:
        engine = sa.create_engine(url)
        try:
            with engine.connect() as conn:
                conn.execute(sa.text("SET enable_seqscan = off"))
                query = "SELECT id FROM passages ORDER BY embedding <=> '[1,0.05,0]' LIMIT 2"
                plan = "\n".join(conn.execute(sa.text(f"EXPLAIN {query}")).scalars())
                assert "passages_hnsw" in plan
                assert list(conn.execute(sa.text(query)).scalars()) == [1, 3]
        finally:
            engine.dispose()
        pid = postmaster_pid(data_dir)
    assert_stopped(pid, port)


def test_redis_roundtrip_and_aof_survives_restart(tmp_path: Path) -> None:
    data_dir, port = tmp_path / "redis", free_port()
    with running_redis(data_dir, port) as url:
        assert url == f"redis://:{LocalRedis(data_dir, port).password()}@127.0.0.1:{port}/0"
        client = redis.Redis.from_url(url, decode_responses=True)
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        client.set("queued-task", "payload")
        assert client.get("queued-task") == "payload"
        pid = int(client.info("server")["process_id"])
        client.close()
    assert_stopped(pid, port)
    assert (data_dir / "appendonly.aof").stat().st_size > 0

    with running_redis(data_dir, port) as url:
        client = redis.Redis.from_url(url, decode_responses=True)
        assert client.get("queued-task") == "payload"
        pid = int(client.info("server")["process_id"])
        client.close()
    assert_stopped(pid, port)


def test_cli_services_under_the_stack_supervisor(
    tmp_path: Path, pg_tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """`tandem services ...` as `tandem up` would run them: durable settings, real signals."""
    pg = LocalPostgres(pg_tmp_path / "pg", free_port())
    rd = LocalRedis(tmp_path / "redis", free_port())
    stack = Stack(stop_timeout=30.0)
    try:
        pg_process = stack.start(local_postgres.service_spec(pg.data_dir, pg.port)).process
        rd_process = stack.start(local_redis.service_spec(rd.data_dir, rd.port)).process
        pg.wait_ready(60.0, pg_process)
        rd.wait_ready(30.0, rd_process)
        # The supervisor's child *is* the server (privileges dropped in-process, then exec),
        # so the stop signal reaches PostgreSQL itself.
        assert postmaster_pid(pg.data_dir) == pg_process.pid
        with psycopg.connect(pg.conninfo()) as conn:
            row = conn.execute(
                "SELECT current_database(), (SELECT count(*) FROM pg_extension"
                " WHERE extname = 'vector')"
            ).fetchone()
        assert row == ("tandem", 1)
        # As root the server runs as its own system user (PostgreSQL refuses root);
        # otherwise as whoever ran it. Either way it is checked, not skipped.
        status = Path(f"/proc/{pg_process.pid}/status").read_text()
        uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
        expected = pwd.getpwnam(SYSTEM_USER).pw_uid if is_root() else os.getuid()
        assert set(uid_line.split()[1:]) == {str(expected)}
        client = redis.Redis.from_url(rd.url())
        assert client.ping()
        client.close()
    finally:
        stack.stop()
    assert pg_process.returncode == 0
    assert rd_process.returncode == 0
    assert not (pg.data_dir / "postmaster.pid").exists()
    assert "received fast shutdown request" in capfd.readouterr().err


def test_prepare_is_idempotent(pg_tmp_path: Path) -> None:
    server = LocalPostgres(pg_tmp_path / "pg", free_port(), settings=THROWAWAY_SETTINGS)
    server.prepare()
    marker = server.data_dir / local_postgres.BOOTSTRAP_MARKER
    first = marker.stat().st_mtime_ns
    server.prepare()  # would fail in initdb (non-empty directory) if it tried again
    assert marker.stat().st_mtime_ns == first  # no second bootstrap server either


def test_long_data_dir_gets_a_short_socket_dir(pg_tmp_path: Path) -> None:
    deep, port = pg_tmp_path / ("d" * 60) / ("e" * 60), free_port()
    socket_dir = LocalPostgres(deep, port).socket_dir()
    assert socket_dir != deep.resolve()
    with running_postgres(deep, port, THROWAWAY_SETTINGS) as url:
        assert (socket_dir / f".s.PGSQL.{port}").is_socket()
        with psycopg.connect(conninfo(url)) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    socket_dir.rmdir()  # empty: PostgreSQL removed its socket and lock file on shutdown


def test_session_postgres_outlives_another_pytest_session(postgres_url: str) -> None:
    """Any pytest session that uses tmp_path makes pytest's temporary root private (0700),
    another session's too; the session's PostgreSQL, run unprivileged, must not care."""
    other = Path(tempfile.mkdtemp(prefix="tandem-other-session-"))
    try:
        (other / "test_other.py").write_text("def test_uses_tmp_path(tmp_path):\n    pass\n")
        ran = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", "/dev/null"],
            cwd=other,
            env={k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"},
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        shutil.rmtree(other)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    # (Not asserted: that pytest's root is private now. Sessions of other tests running on
    # this machine may already have opened it up again.)
    with psycopg.connect(conninfo(postgres_url), autocommit=True) as conn:
        conn.execute("CHECKPOINT")  # writes pg_control: fails if the server lost its data dir
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_session_fixtures(postgres_url: str, redis_url: str) -> None:
    with psycopg.connect(conninfo(postgres_url)) as conn:
        assert conn.execute("SHOW fsync").fetchone() == ("off",)
        assert conn.execute("SELECT '[1,2]'::vector <=> '[2,4]'::vector").fetchone() == (0.0,)
    client = redis.Redis.from_url(redis_url)
    assert client.ping()
    client.close()


def test_memory_settings_take_a_quarter_of_memory_within_bounds() -> None:
    gib = 1024**3
    assert local_postgres.memory_settings(24 * gib) == {
        "shared_buffers": "4096MB",  # capped
        "effective_cache_size": "12288MB",
    }
    assert local_postgres.memory_settings(8 * gib)["shared_buffers"] == "2048MB"
    assert local_postgres.memory_settings(256 * 1024**2) == {
        "shared_buffers": "128MB",  # PostgreSQL's own default is the floor
        "effective_cache_size": "128MB",
    }


def test_the_session_postgres_runs_with_the_machines_memory_settings(postgres_url: str) -> None:
    expected = local_postgres.memory_settings(local_postgres.machine_memory_bytes())
    # Compared in kB: PostgreSQL counts shared_buffers in 8kB pages and shows "4GB".
    with psycopg.connect(conninfo(postgres_url)) as conn:
        for name, value in expected.items():
            row = conn.execute(
                "SELECT setting::bigint * pg_size_bytes(unit) / 1024, pg_size_bytes(%s) / 1024"
                " FROM pg_settings WHERE name = %s",
                (value, name),
            ).fetchone()
            assert row is not None and row[0] == row[1], (name, row, value)
