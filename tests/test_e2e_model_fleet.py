"""More than one model server per role, end to end: a worker spreads its batches over two
indexing servers and loses nothing when one is SIGKILLed mid-ingest; the API keeps
searching semantically with one of its two inference servers stopped."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx

from tandem.model_client.metrics import parse_metrics
from tests.e2e_support import (
    Backends,
    running,
    search,
    start_api,
    start_worker,
    upload,
    wait_attempt,
)
from tests.resume_support import Database, check_indexed_exactly_once, long_text, short_text
from tests.support import ServerProcess, start_model_server


def _items_embedded(server: ServerProcess) -> float:
    return parse_metrics(httpx.get(f"{server.url}/metrics", timeout=10).text).items


def _corpus() -> dict[str, bytes]:
    """About 250 chunks: four long reports (each ~45 chunks) and 60 one-chunk notes."""
    files = {f"note-{n:02d}.txt": short_text(n).encode() for n in range(60)}
    for k in range(4):
        files[f"report-{k}.txt"] = long_text().replace("field report", f"report {k}").encode()
    return files


def test_a_killed_indexing_server_loses_nothing_and_the_other_takes_the_load(
    api: ServerProcess,
    backends: Backends,
    indexing_server: ServerProcess,
    model_cache: Path,
    server_logs: Path,
) -> None:
    database = Database(backends.database_url)
    database.reset()
    doomed = start_model_server("indexing", server_logs)
    files = _corpus()
    # Small claims and requests, so the ingest is many requests spread over both servers.
    settings = {
        "INDEXING_MODEL_SERVER_URLS": f"{doomed.url},{indexing_server.url}",
        "TANDEM_BATCH_ITEMS": "4",
        "TANDEM_EMBED_BATCH_SIZE": "8",
    }
    try:
        with running(start_worker(backends, indexing_server.url, settings)) as worker:
            # Counted from here: a server's own warm-up embeds a few texts too.
            survivor_before, doomed_before = map(_items_embedded, (indexing_server, doomed))
            response = upload(api, files)
            assert response.status_code == 202, response.text
            attempt_id = response.json()["attempt_id"]
            deadline = time.monotonic() + 120
            while _items_embedded(doomed) == doomed_before:
                assert time.monotonic() < deadline, worker.log()
                time.sleep(0.05)
            doomed.process.send_signal(signal.SIGKILL)
            doomed.process.wait(30)
            survivor_at_kill = _items_embedded(indexing_server)
            attempt = wait_attempt(api, attempt_id, timeout=300)
            survivor_after = _items_embedded(indexing_server)
            log = worker.log()
        assert attempt["status"] == "succeeded", attempt
        assert {item["status"] for item in attempt["items"]} == {"succeeded"}
        assert "model_endpoint_down url=" + doomed.url in log
        # Both served before the kill; the survivor took the rest, and what the killed
        # one had answered was kept (the survivor embedded fewer passages than are stored).
        chunks = sum(database.chunk_counts().values())
        assert chunks >= 250
        assert survivor_before < survivor_at_kill < survivor_after
        assert survivor_after - survivor_before < chunks
        check_indexed_exactly_once(database, files, model_cache, indexing_server.url)
    finally:
        doomed.stop()


def test_searches_succeed_with_one_of_two_inference_servers_stopped(
    backends: Backends,
    inference_server: ServerProcess,
    worker: ServerProcess,
    server_logs: Path,
) -> None:
    extra = start_model_server("inference", server_logs)
    urls = {"MODEL_SERVER_URLS": f"{extra.url},{inference_server.url}"}
    try:
        with running(start_api(backends, inference_server.url, env=urls)) as api:
            files = {f"heron-{n}.txt": short_text(n).encode() for n in range(5)}
            attempt = wait_attempt(api, upload(api, files).json()["attempt_id"])
            assert attempt["status"] == "succeeded", attempt
            before = {s.url: _items_embedded(s) for s in (extra, inference_server)}
            for n in range(4):
                assert not search(api, f"heron pond {n}", mode="semantic")["degraded"]
            used = {s.url: _items_embedded(s) - before[s.url] for s in (extra, inference_server)}
            assert all(count > 0 for count in used.values()), used  # both took queries
            extra.stop()
            for n in range(10):
                result = search(api, f"grey heron caught fish {n}", mode="semantic")
                assert not result["degraded"] and result["results"], result
            assert f"model_endpoint_down url={extra.url}" in api.log()
            endpoints = httpx.get(f"{api.url}/api/stats").json()["inference_endpoints"]
            seen = {e["url"]: e for e in endpoints}
            assert not seen[extra.url]["up"] and seen[inference_server.url]["up"]
            assert seen[inference_server.url]["requests"] >= 10
    finally:
        extra.stop()
