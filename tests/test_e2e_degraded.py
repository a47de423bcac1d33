"""The system under strain, over real HTTP: an overloaded model server (429) seen by the
worker and by the API, a model server still loading (503), and two API servers starting
at once against a fresh database."""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text

from tandem.db.migrate import MIGRATION_LOCK_ID, alembic_config, current_revision
from tandem.db.session import normalize_url
from tandem.local.services.redis import running_redis
from tests.e2e_support import (
    Backends,
    running,
    search,
    start_api,
    start_worker,
    upload,
    wait_attempt,
)
from tests.fake_model_server import OverloadedModelServer, overloaded_model_server
from tests.support import (
    ServerProcess,
    free_port,
    scratch_database,
    spawn,
    start_model_server,
    wait_ready,
)

REFUSED_EMBEDS = 3
OSPREY = b"The osprey plunges feet first into the water to catch fish."


@pytest.fixture(scope="module")
def overloaded_indexing(indexing_server: ServerProcess) -> Iterator[OverloadedModelServer]:
    """The real indexing server behind a front that refuses its first embeds with 429."""
    with overloaded_model_server(indexing_server.url, refuse=REFUSED_EMBEDS) as front:
        yield front


@pytest.fixture(scope="module")
def indexed_through_429s(
    backends: Backends, api: ServerProcess, overloaded_indexing: OverloadedModelServer
) -> dict[str, Any]:
    with running(start_worker(backends, overloaded_indexing.url)):
        accepted = upload(api, {"osprey.txt": OSPREY})
        return wait_attempt(api, accepted.json()["attempt_id"])


def test_the_worker_waits_out_429s_and_indexes(
    api: ServerProcess,
    overloaded_indexing: OverloadedModelServer,
    indexed_through_429s: dict[str, Any],
) -> None:
    assert indexed_through_429s["status"] == "succeeded", indexed_through_429s
    assert sum(overloaded_indexing.refused.values()) == REFUSED_EMBEDS
    embeds_passed_on = sum(n for p, n in overloaded_indexing.forwarded.items() if p != "/api/ready")
    assert embeds_passed_on >= 1  # the item was embedded after the refusals, not skipped
    hits = search(api, "osprey plunges", mode="semantic", limit=1)
    assert hits["degraded"] is False
    assert [h["document_id"] for h in hits["results"]] == ["osprey.txt"]


def test_the_api_falls_back_to_flagged_keyword_results_on_429(
    backends: Backends, indexed_through_429s: dict[str, Any]
) -> None:
    with (
        overloaded_model_server(upstream=None, refuse=None) as overloaded,
        running(start_api(backends, overloaded.url)) as api,
    ):
        result = search(api, "osprey plunges", mode="hybrid", limit=3)
        assert overloaded.refused["/encoder/bi-encoder-embed"] >= 1  # it asked, and got 429
    assert result["degraded"] is True
    assert result["mode"] == "keyword"
    assert result["notice"] and "keyword-only" in result["notice"]
    assert [h["document_id"] for h in result["results"]] == ["osprey.txt"]


def test_a_loading_model_server_answers_503_then_serves(server_logs: Path) -> None:
    server = start_model_server("inference", server_logs, wait=False)
    try:
        first = None
        deadline = time.monotonic() + 60
        with httpx.Client(timeout=10) as client:
            while first is None:  # the first answer the server gives at all
                assert server.process.poll() is None, server.log()
                assert time.monotonic() < deadline, server.log()
                try:
                    first = client.post(
                        f"{server.url}/encoder/bi-encoder-embed", json={"texts": ["osprey"]}
                    )
                except httpx.TransportError:
                    time.sleep(0.005)  # not listening yet
            assert first.status_code == 503, first.text
            assert first.json()["error"]["type"] == "not_ready"
            assert first.headers["retry-after"] == "1"
            wait_ready(server)
            served = client.post(f"{server.url}/encoder/bi-encoder-embed", json={"texts": ["q"]})
            assert served.status_code == 200
            assert len(served.json()["embeddings"][0]) == 384
    finally:
        server.stop()


@pytest.fixture
def fresh_database(postgres_url: str) -> Iterator[str]:
    with scratch_database(postgres_url, f"fresh_{uuid.uuid4().hex[:12]}") as url:
        yield url


def _wait_for_lock_waiters(connection: Any, count: int, timeout: float = 60.0) -> None:
    """Until `count` other sessions wait on an advisory lock of this database."""
    deadline = time.monotonic() + timeout
    waiting = 0
    while time.monotonic() < deadline:
        waiting = connection.execute(
            text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            )
        ).scalar_one()
        if waiting >= count:
            return
        time.sleep(0.1)
    raise AssertionError(f"{waiting} of {count} servers waited on the migration lock")


def test_two_api_servers_migrate_a_fresh_database_at_once(
    backends: Backends, fresh_database: str
) -> None:
    fresh = Backends(fresh_database, backends.redis_url, backends.log_dir)
    env = os.environ | fresh.env(MODEL_SERVER_HOST="127.0.0.1", MODEL_SERVER_PORT=str(free_port()))
    servers = []
    # The test holds the migration lock until both servers wait on it, so their
    # migrations really start together: without the lock, the second would meet a
    # half-made schema (or both would create the same tables) and fail to start.
    holder = create_engine(normalize_url(fresh_database))
    held = holder.connect()
    transaction = held.begin()
    held.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})
    try:
        for _ in range(2):
            port = free_port()
            log_path = backends.log_dir / f"api-fresh-{port}.log"
            argv = [sys.executable, "-m", "tandem.cli", "api", "--port", str(port)]
            argv.append("--open-access")
            servers.append(
                ServerProcess(spawn(argv, env, log_path), f"http://127.0.0.1:{port}", log_path)
            )
        _wait_for_lock_waiters(held, 2)
        transaction.rollback()  # both go at once
        for server in servers:
            wait_ready(server)
        for server in servers:
            listed = httpx.get(f"{server.url}/api/documents")
            assert listed.status_code == 200, listed.text
            assert listed.json()["total"] == 0
            assert "Traceback" not in server.log()
    finally:
        held.close()
        holder.dispose()
        for server in servers:
            server.stop()
    engine = create_engine(normalize_url(fresh_database))
    try:
        head = ScriptDirectory.from_config(alembic_config()).get_current_head()
        assert current_revision(engine) == head
    finally:
        engine.dispose()


def test_an_upload_while_redis_is_down_is_indexed_once_it_is_back(
    backends: Backends,
    inference_server: ServerProcess,
    indexing_server: ServerProcess,
    tmp_path: Path,
) -> None:
    """The upload is stored in PostgreSQL (the work queue); Redis only carries the wake-up
    message, so a message lost to a Redis outage must not lose the item."""
    redis_dir, redis_port = tmp_path / "redis", free_port()
    with ExitStack() as stack:
        outage = running_redis(redis_dir, redis_port)
        own = Backends(backends.database_url, outage.__enter__(), backends.log_dir)
        try:
            api = stack.enter_context(running(start_api(own, inference_server.url)))
            sweep = {"TANDEM_SWEEP_SECONDS": "1"}
            stack.enter_context(running(start_worker(own, indexing_server.url, env=sweep)))
        finally:
            outage.__exit__(None, None, None)  # Redis goes down
        accepted = upload(api, {"kestrel.txt": b"A kestrel hovers into the wind over verges."})
        assert accepted.status_code == 202, accepted.text
        attempt_id = accepted.json()["attempt_id"]
        pending = httpx.get(f"{api.url}/api/index-attempts/{attempt_id}").json()
        assert pending["status"] not in ("succeeded", "failed"), pending  # stored, waiting
        with running_redis(redis_dir, redis_port):  # back on the same address
            attempt = wait_attempt(api, attempt_id, timeout=90)
    assert attempt["status"] == "succeeded", attempt
    assert attempt["items"][0]["chunk_count"] == 1
