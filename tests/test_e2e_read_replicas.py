"""The API server reading from a hot standby: real primary, standby, Redis, model
servers, API server and worker on loopback. Searches reach the standby and uploads the
primary; a document is found right after its attempt succeeds while the standby's replay
keeps pausing; a SIGKILLed standby fails no search; /api/stats and /metrics show the lag."""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.e2e_support import (
    Backends,
    reset_database,
    running,
    search,
    start_api,
    start_worker,
    upload,
)
from tests.replica_support import Replication, replication
from tests.support import ServerProcess, service_dir

pytestmark = pytest.mark.slow
# Reads of the tables every search mode reads, on one server (its own statistics: a
# standby counts the scans run on it, not the primary's). Not bm25_terms: its index is
# probed on the primary some seconds after a write with no search running (seen: 4 probes
# 3-8 s after an upload; autovacuum or a late statistics flush).
SCANS = (
    "SELECT coalesce(sum(coalesce(seq_scan, 0) + coalesce(idx_scan, 0)), 0) "
    "FROM pg_stat_user_tables WHERE relname IN ('chunks', 'bm25_postings')"
)
INSERTED_ATTEMPTS = "SELECT n_tup_ins FROM pg_stat_user_tables WHERE relname = 'index_attempts'"


@pytest.fixture(scope="module")
def pair() -> Iterator[Replication]:
    with service_dir("e2e-replicas") as scratch, replication(scratch) as running_pair:
        yield running_pair


@pytest.fixture(scope="module")
def replica_backends(
    pair: Replication, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Backends:
    reset_database(pair.primary.url(), redis_url)
    return Backends(pair.primary.url(), redis_url, tmp_path_factory.mktemp("replica-logs"))


@pytest.fixture(scope="module")
def replica_api(
    pair: Replication, replica_backends: Backends, inference_server: ServerProcess
) -> Iterator[ServerProcess]:
    env = {
        "DATABASE_READ_URLS": pair.standby.url(),
        "DATABASE_READ_CHECK_SECONDS": "0.2",
        # No lag bound to speak of: only the replayed position keeps reads current.
        "DATABASE_READ_MAX_LAG_SECONDS": "3600",
    }
    with running(start_api(replica_backends, inference_server.url, env=env)) as server:
        yield server


@pytest.fixture(scope="module")
def replica_worker(
    replica_backends: Backends, indexing_server: ServerProcess
) -> Iterator[ServerProcess]:
    with running(start_worker(replica_backends, indexing_server.url, concurrency=2)) as worker:
        yield worker


def _count(pair: Replication, on_standby: bool, statement: str) -> int:
    rows = (pair.standby_sql if on_standby else pair.primary_sql)(statement)
    return int(rows[0][0]) if rows else 0


def _settled(pair: Replication, on_standby: bool) -> int:
    """The scan count once two readings 1.5 s apart agree."""
    last = _count(pair, on_standby, SCANS)
    for _ in range(20):
        time.sleep(1.5)
        now = _count(pair, on_standby, SCANS)
        if now == last:
            return now
        last = now
    raise AssertionError("the scan count did not settle")


def _wait_succeeded(api: ServerProcess, attempt_id: str, timeout: float = 120.0) -> None:
    """Poll as a client would, and return the moment it reports `succeeded`."""
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=api.url, timeout=30) as client:
        while time.monotonic() < deadline:
            status = client.get(f"/api/index-attempts/{attempt_id}").json()["status"]
            if status == "succeeded":
                return
            assert status != "failed"
            time.sleep(0.02)
    raise AssertionError(f"attempt {attempt_id} did not succeed")


def _until(check: object, timeout: float = 20.0) -> None:
    assert callable(check)
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_searches_reach_the_standby_and_uploads_the_primary(
    pair: Replication, replica_api: ServerProcess, replica_worker: ServerProcess
) -> None:
    inserted = _count(pair, False, INSERTED_ATTEMPTS)
    response = upload(replica_api, {"quokka.txt": b"The quokka lives on Rottnest Island."})
    _wait_succeeded(replica_api, response.json()["attempt_id"])
    _until(lambda: _count(pair, False, INSERTED_ATTEMPTS) > inserted)  # stats flush ~1 s late
    pair.wait_replayed()
    # The worker's writes (the BM25 triggers read their tables) are counted when its
    # connections flush their statistics, a second or more later.
    primary_before, standby_before = _settled(pair, False), _settled(pair, True)
    for mode in ("keyword", "hybrid", "semantic"):
        hits = search(replica_api, "quokka Rottnest", mode=mode)["results"]
        assert [h["document_id"] for h in hits][:1] == ["quokka.txt"]
    _until(lambda: _count(pair, True, SCANS) > standby_before)
    assert _settled(pair, False) == primary_before  # not one scan of them on the primary


def test_stats_and_metrics_show_each_replica(replica_api: ServerProcess) -> None:
    _until(lambda: httpx.get(f"{replica_api.url}/api/stats").json()["read_replicas"][0]["healthy"])
    (replica,) = httpx.get(f"{replica_api.url}/api/stats").json()["read_replicas"]
    assert replica["name"] == "replica-1"
    assert replica["lag_seconds"] is not None and replica["lag_seconds"] < 5
    assert replica["lag_bytes"] is not None
    metrics = httpx.get(f"{replica_api.url}/metrics").text
    assert 'tandem_read_replica_healthy{replica="replica-1"} 1.0' in metrics
    assert 'tandem_read_replica_lag_seconds{replica="replica-1"}' in metrics
    assert 'tandem_read_replica_lag_bytes{replica="replica-1"}' in metrics
    search(replica_api, "quokka", mode="keyword")
    metrics = httpx.get(f"{replica_api.url}/metrics").text
    served = re.search(r'tandem_reads_total\{outcome="served",target="replica-1"\} (\S+)', metrics)
    assert served is not None and float(served.group(1)) >= 1, metrics
    assert "postgresql" not in metrics and "password" not in metrics


def _toggle_replay(pair: Replication, stop: threading.Event, pauses: list[int]) -> None:
    """The standby's replay paused and resumed in turns: it is often behind."""
    while not stop.is_set():
        pair.standby_sql("SELECT pg_wal_replay_pause()")
        pauses.append(1)
        stop.wait(0.3)
        pair.standby_sql("SELECT pg_wal_replay_resume()")
        stop.wait(0.15)
    pair.standby_sql("SELECT pg_wal_replay_resume()")


TRIES = 120


def test_a_document_is_found_as_soon_as_its_attempt_succeeds(
    pair: Replication, replica_api: ServerProcess, replica_worker: ServerProcess
) -> None:
    def one_try(n: int) -> bool:
        word = f"zebu{secrets.token_hex(6)}"
        name = f"ryw-{n}.txt"
        response = upload(replica_api, {name: f"Notes on {word} number {n}.".encode()})
        _wait_succeeded(replica_api, response.json()["attempt_id"])
        hits = search(replica_api, word, mode="keyword")["results"]
        return name in [h["document_id"] for h in hits]

    stop, pauses = threading.Event(), list[int]()
    toggler = threading.Thread(target=_toggle_replay, args=(pair, stop, pauses))
    standby_before = _count(pair, True, SCANS)
    toggler.start()
    try:
        with ThreadPoolExecutor(4) as pool:
            found = list(pool.map(one_try, range(TRIES)))
    finally:
        stop.set()
        toggler.join()
    assert found.count(False) == 0
    assert len(pauses) >= 5  # the standby really was held back, many times
    _until(lambda: _count(pair, True, SCANS) > standby_before)  # and still served some


def test_a_killed_standby_fails_no_search(pair: Replication, replica_api: ServerProcess) -> None:
    stop, outcomes = threading.Event(), list[int]()

    def keep_searching() -> None:
        with httpx.Client(base_url=replica_api.url, timeout=30) as client:
            while not stop.is_set():
                response = client.post("/api/search", json={"query": "quokka", "mode": "keyword"})
                outcomes.append(response.status_code)

    searcher = threading.Thread(target=keep_searching)
    searcher.start()
    try:
        time.sleep(1.0)
        pair.kill_standby()
        time.sleep(2.0)
        pair.start_standby()
        _until(
            lambda: httpx.get(f"{replica_api.url}/api/stats").json()["read_replicas"][0]["healthy"]
        )
        time.sleep(1.0)
    finally:
        stop.set()
        searcher.join()
    assert len(outcomes) > 10
    assert set(outcomes) == {200}
