"""The local PostgreSQL and Redis that `tandem up` starts need passwords: any process on
the machine can reach their loopback ports, only the stack's own can log in. Data dirs
from before passwords are upgraded in place."""

from __future__ import annotations

import os
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
import redis

from tandem.config import ModelServerSettings, StorageSettings
from tandem.local.services import postgres_auth
from tandem.local.services.child import serving_child
from tandem.local.services.credentials import password_file
from tandem.local.services.postgres import (
    SHUTDOWN_SIGNAL,
    THROWAWAY_SETTINGS,
    LocalPostgres,
    running_postgres,
)
from tandem.local.services.redis import LocalRedis, running_redis
from tandem.local.stack import LocalPorts, local_stack_specs
from tests.support import free_port

pytestmark = pytest.mark.slow

# What older Tandem versions had initdb write: every connection trusted.
OLD_TRUST_HBA = """\
local   all             all                                     trust
host    all             all             127.0.0.1/32            trust
host    all             all             ::1/128                 trust
"""


def connect(url: str, password: str | None) -> psycopg.Connection[tuple[object, ...]]:
    parts = urlsplit(url)
    return psycopg.connect(
        host=parts.hostname,
        port=parts.port,
        user=parts.username,
        password=password,
        dbname=parts.path.lstrip("/"),
        connect_timeout=5,
    )


def assert_private(path: Path) -> None:
    assert path.is_file(), path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600, oct(path.stat().st_mode)


def test_postgres_refuses_tcp_connections_without_the_password(postgres_url: str) -> None:
    password = urlsplit(postgres_url).password
    assert password and len(password) >= 32
    for wrong in (None, "", "not-the-password"):
        with pytest.raises(psycopg.OperationalError, match="password"):
            connect(postgres_url, wrong).close()
    with connect(postgres_url, password) as conn:
        rules = conn.execute(
            "SELECT type, auth_method FROM pg_hba_file_rules WHERE error IS NULL"
        ).fetchall()
    assert {method for kind, method in rules if kind == "host"} == {"scram-sha-256"}
    assert {method for kind, method in rules if kind == "local"} == {"trust"}  # 0700 dir


def test_redis_refuses_commands_without_the_password(redis_url: str) -> None:
    parts = urlsplit(redis_url)
    assert parts.hostname is not None and parts.port is not None
    for wrong in (None, "not-the-password"):
        stranger = redis.Redis(host=parts.hostname, port=parts.port, password=wrong)
        with pytest.raises(redis.AuthenticationError):
            stranger.set("planted", "by anyone on this machine")
        stranger.close()
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.get("planted") is None
        pid = int(client.info("server")["process_id"])
    finally:
        client.close()
    # The password is in a 0600 config file, not on the command line every user can read.
    assert (
        parts.password and parts.password.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes()
    )


def test_tandem_up_hands_its_services_urls_with_the_passwords(tmp_path: Path) -> None:
    storage = StorageSettings(database_url=None, redis_url=None, data_dir=tmp_path)
    specs, _ = local_stack_specs(ModelServerSettings(), storage, LocalPorts())
    pg_password = password_file(tmp_path / "postgres")
    redis_password = password_file(tmp_path / "redis")
    assert pg_password == tmp_path / "postgres.password"
    assert_private(pg_password)
    assert_private(redis_password)
    for name in ("api-server", "background-worker"):
        env = next(spec.env for spec in specs if spec.name == name)
        assert urlsplit(env["DATABASE_URL"]).password == pg_password.read_text().strip()
        assert urlsplit(env["REDIS_URL"]).password == redis_password.read_text().strip()
    # Made once: a second `tandem up` hands out the same ones.
    again, _ = local_stack_specs(ModelServerSettings(), storage, LocalPorts())
    assert [s.env for s in again] == [s.env for s in specs]


def test_a_postgres_data_dir_from_before_passwords_is_upgraded_in_place(
    pg_tmp_path: Path,
) -> None:
    data_dir, port = pg_tmp_path / "pg", free_port()
    with (
        running_postgres(data_dir, port, THROWAWAY_SETTINGS) as url,
        connect(url, urlsplit(url).password) as conn,
    ):
        conn.execute("CREATE TABLE kept (note text)")
        conn.execute("INSERT INTO kept VALUES ('written before the upgrade')")
        conn.commit()
    # Make it what an older Tandem left: trust for TCP, no marker, no password file.
    server = LocalPostgres(data_dir, port, settings=THROWAWAY_SETTINGS)
    with (data_dir / "pg_hba.conf").open("r+") as hba:
        hba.truncate(0)
        hba.write(OLD_TRUST_HBA)
    (data_dir / postgres_auth.AUTH_MARKER).unlink()
    with serving_child(server, SHUTDOWN_SIGNAL, timeout=60.0):
        connect(server.url(), None).close()  # the old way: no password needed
    password_file(data_dir).unlink()

    with running_postgres(data_dir, port, THROWAWAY_SETTINGS) as url:
        assert_private(password_file(data_dir))
        with pytest.raises(psycopg.OperationalError, match="password"):
            connect(url, None).close()
        with connect(url, urlsplit(url).password) as conn:
            assert conn.execute("SELECT note FROM kept").fetchall() == [
                ("written before the upgrade",)
            ]


def test_a_lost_postgres_password_file_is_replaced(pg_tmp_path: Path) -> None:
    data_dir, port = pg_tmp_path / "pg", free_port()
    with running_postgres(data_dir, port, THROWAWAY_SETTINGS) as first:
        pass
    password_file(data_dir).unlink()
    with running_postgres(data_dir, port, THROWAWAY_SETTINGS) as second:
        assert urlsplit(second).password != urlsplit(first).password
        connect(second, urlsplit(second).password).close()
        with pytest.raises(psycopg.OperationalError, match="password"):
            connect(first, urlsplit(first).password).close()


def test_a_redis_dir_from_before_passwords_keeps_its_data(tmp_path: Path) -> None:
    data_dir, port = tmp_path / "redis", free_port()
    with running_redis(data_dir, port) as url:
        client = redis.Redis.from_url(url)
        client.set("queued-task", "payload")
        client.close()
    password_file(data_dir).unlink()  # an older Tandem's data dir had none
    (data_dir / "tandem-redis.conf").unlink()
    with running_redis(data_dir, port) as url:
        assert_private(password_file(data_dir))
        assert_private(data_dir / "tandem-redis.conf")
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(host="127.0.0.1", port=port).get("queued-task")
        client = redis.Redis.from_url(url)
        assert client.get("queued-task") == b"payload"
        client.close()


def test_the_password_file_is_made_once_under_a_race(tmp_path: Path) -> None:
    """`tandem up` and the server it starts may both make it first: one password wins."""
    server = LocalRedis(tmp_path / "redis", free_port())
    with ThreadPoolExecutor(8) as pool:
        passwords = set(pool.map(lambda _: server.password(), range(32)))
    assert len(passwords) == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no leftovers
    assert os.listdir(tmp_path) == ["redis.password"]
