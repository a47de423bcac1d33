"""Restarts of the parts during an ingest: Redis restarted, then PostgreSQL restarted, each
a real server this module starts on its own data directory. The API and the worker (real
processes) reconnect on their own, and every item completes exactly once: each document's
chunks exactly as its text says, none twice."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from tandem.local.services.postgres import THROWAWAY_SETTINGS, running_postgres
from tandem.local.services.redis import running_redis
from tests.e2e_support import Backends, running, start_api, start_worker, wait_attempt
from tests.resume_support import Database, check_indexed_exactly_once, short_text
from tests.support import ServerProcess, free_port, service_dir

pytestmark = pytest.mark.slow

DOCUMENTS = 400
# Small batches and a quick sweep, so the ingest is mid-way for a while and a lost
# message is re-sent soon; leases long enough that a live worker never loses its items.
WORKER_ENV = {
    "TANDEM_BATCH_ITEMS": "8",
    "TANDEM_SWEEP_SECONDS": "1",
    "TANDEM_LEASE_SECONDS": "30",
    "TANDEM_RETRY_BASE_SECONDS": "1",
    "TANDEM_TASK_VISIBILITY_TIMEOUT": "3600",
}
OUTAGE_LIMIT_SECONDS = 60.0
FINISH_LIMIT_SECONDS = 240.0


class Restartable:
    """A server run by a `running_*` context manager, stopped and started again at will
    on the same data directory and port (so the URL its clients hold stays valid)."""

    def __init__(self, start: Callable[[], AbstractContextManager[str]]) -> None:
        self._start = start
        self._stack: ExitStack | None = None
        self.url = ""

    def start(self) -> str:
        assert self._stack is None
        stack = ExitStack()
        self.url = stack.enter_context(self._start())
        self._stack = stack
        return self.url

    def stop(self) -> None:
        if self._stack is not None:
            stack, self._stack = self._stack, None
            stack.close()


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Restartable, ...]]:
    # PostgreSQL drops root privileges: its data lives outside pytest's private root.
    scratch = ExitStack()
    pg_dir = scratch.enter_context(service_dir("restart-postgres")) / "data"
    redis_dir = tmp_path_factory.mktemp("restart-redis")
    pg_port, redis_port = free_port(), free_port()
    postgres = Restartable(lambda: running_postgres(pg_dir, pg_port, THROWAWAY_SETTINGS))
    redis = Restartable(lambda: running_redis(redis_dir, redis_port))
    try:
        postgres.start()
        redis.start()
        yield postgres, redis
    finally:
        redis.stop()
        postgres.stop()
        scratch.close()


@pytest.fixture(scope="module")
def stack(
    services: tuple[Restartable, Restartable],
    inference_server: ServerProcess,
    indexing_server: ServerProcess,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Backends, ServerProcess, ServerProcess]]:
    postgres, redis = services
    backends = Backends(postgres.url, redis.url, tmp_path_factory.mktemp("restart-logs"))
    with (
        running(start_api(backends, inference_server.url)) as api,
        running(start_worker(backends, indexing_server.url, WORKER_ENV)) as worker,
    ):
        yield backends, api, worker


def _post_batch(api: ServerProcess, documents: dict[str, str]) -> str:
    response = httpx.post(
        f"{api.url}/api/documents/batch",
        json={"documents": [{"id": d, "title": d, "text": t} for d, t in documents.items()]},
        timeout=60,
    )
    assert response.status_code == 202, response.text
    return str(response.json()["attempt_id"])


def _wait_mid_ingest(database: Database, attempt_id: str) -> int:
    """Until some items are done and others not: the moment to take a server away."""
    deadline = time.monotonic() + FINISH_LIMIT_SECONDS
    while time.monotonic() < deadline:
        done = sum(i.status == "succeeded" for i in database.items(attempt_id))
        if done >= 16:
            assert done < DOCUMENTS, "the ingest finished before the restart: make it longer"
            return done
        time.sleep(0.05)
    raise AssertionError("the ingest did not start")


def _ingest_under_way(
    stack: tuple[Backends, ServerProcess, ServerProcess], prefix: str
) -> tuple[dict[str, str], str, int]:
    """An ingest of DOCUMENTS new documents, part done: (the documents, its attempt id, the
    worker log's length at that moment)."""
    backends, api, worker = stack
    database = Database(backends.database_url)
    database.reset()
    documents = {f"{prefix}-{n:04d}": short_text(n) for n in range(DOCUMENTS)}
    first = _post_batch(api, documents)
    _wait_mid_ingest(database, first)
    return documents, first, len(worker.log())


def _wait_log(worker: ServerProcess, markers: tuple[str, ...], since: int) -> None:
    """Until the worker's log (past offset `since`) shows it has noticed the outage."""
    deadline = time.monotonic() + OUTAGE_LIMIT_SECONDS
    while time.monotonic() < deadline:
        assert worker.process.poll() is None, worker.log()
        if any(m in worker.log()[since:] for m in markers):
            return
        time.sleep(0.1)
    raise AssertionError(f"the worker never noticed the outage:\n{worker.log()[since:]}")


def _check_completed_once(
    backends: Backends,
    api: ServerProcess,
    attempt_ids: list[str],
    documents: dict[str, str],
    model_cache: Path,
    indexing_server: ServerProcess,
) -> list[dict[str, Any]]:
    finished = [wait_attempt(api, a, timeout=FINISH_LIMIT_SECONDS) for a in attempt_ids]
    for attempt in finished:
        assert attempt["status"] == "succeeded", attempt
        assert attempt["failed"] == 0, attempt
    database = Database(backends.database_url)
    check_indexed_exactly_once(
        database,
        {d: t.encode() for d, t in documents.items()},
        model_cache,
        indexing_server.url,
        titles={d: d for d in documents},
    )
    return finished


def test_redis_restarted_during_an_ingest(
    services: tuple[Restartable, Restartable],
    stack: tuple[Backends, ServerProcess, ServerProcess],
    indexing_server: ServerProcess,
    model_cache: Path,
) -> None:
    _, redis = services
    backends, api, worker = stack
    documents, first, log_offset = _ingest_under_way(stack, "redis")
    redis.stop()
    try:
        _wait_log(worker, ("Connection to broker lost", "Cannot connect to redis"), log_offset)
        # The API keeps answering while Redis is away: uploads are stored, progress is read.
        late = {f"redis-late-{n}": short_text(DOCUMENTS + n) for n in range(20)}
        second = _post_batch(api, late)
        progress = httpx.get(f"{api.url}/api/index-attempts/{first}", timeout=30)
        assert progress.status_code == 200, progress.text
    finally:
        redis.start()
    # After the restart the API's producer reconnects: the next upload is announced.
    after = {f"redis-after-{n}": short_text(2 * DOCUMENTS + n) for n in range(20)}
    third = _post_batch(api, after)
    _check_completed_once(
        backends,
        api,
        [first, second, third],
        documents | late | after,
        model_cache,
        indexing_server,
    )
    assert f"enqueue_failed attempt={second}" in api.log()  # Redis was down for that one
    assert f"enqueue_failed attempt={third}" not in api.log()
    assert worker.process.poll() is None, worker.log()


def test_postgres_restarted_during_an_ingest(
    services: tuple[Restartable, Restartable],
    stack: tuple[Backends, ServerProcess, ServerProcess],
    indexing_server: ServerProcess,
    model_cache: Path,
) -> None:
    postgres, _ = services
    backends, api, worker = stack
    documents, first, log_offset = _ingest_under_way(stack, "pg")
    postgres.stop()
    try:
        _wait_log(worker, ("OperationalError", "sweep_failed"), log_offset)
        # Without its database the API answers at once: 503 with Retry-After, not a 500.
        outage = httpx.get(f"{api.url}/api/index-attempts/{first}", timeout=30)
        assert outage.status_code == 503, outage.text
        assert outage.headers["retry-after"] == "2"
        assert outage.json()["error"]["type"] == "not_ready"
        searched = httpx.post(f"{api.url}/api/search", json={"query": "heron"}, timeout=30)
        assert searched.status_code == 503, searched.text
    finally:
        postgres.start()
    # The first requests after the restart already succeed (stale connections are
    # replaced, not handed out).
    after = httpx.get(f"{api.url}/api/index-attempts/{first}", timeout=30)
    assert after.status_code == 200, after.text
    searched = httpx.post(f"{api.url}/api/search", json={"query": "grey heron"}, timeout=30)
    assert searched.status_code == 200, searched.text
    assert searched.json()["results"], "documents indexed before the restart are found"
    paths = httpx.get(f"{api.url}/openapi.json", timeout=30).json()["paths"]
    for path, method in (("/api/search", "post"), ("/api/index-attempts/{attempt_id}", "get")):
        assert "503" in paths[path][method]["responses"], path  # the outage answer is documented
    _check_completed_once(backends, api, [first], documents, model_cache, indexing_server)
    assert worker.process.poll() is None, worker.log()
