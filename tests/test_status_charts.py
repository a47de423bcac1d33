"""The status page's chart data: Prometheus readings turned into rates and latency
quantiles (against real model servers), the bounded history, and the API route serving it."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from redis import Redis

from tandem.model_client.client import ModelClient
from tandem.model_client.history import MetricsHistory, MetricsSample, sample_from
from tandem.model_client.metrics import histogram_increase, histogram_quantile, parse_metrics
from tandem.model_client.status import (
    INDEXING_STATUS_KEY,
    ModelServerStatus,
    StatusProbe,
    redis_publisher,
)
from tandem.wire.model import TextType
from tests.e2e_support import Backends, create_api_key, running, start_api
from tests.support import ServerProcess

INF = math.inf


def test_quantiles_interpolate_inside_the_bucket_as_prometheus_does() -> None:
    buckets = {0.001: 0.0, 0.002: 10.0, 0.004: 20.0, INF: 20.0}
    assert histogram_quantile(0.25, buckets) == pytest.approx(0.0015)  # rank 5 of (1, 2] ms
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.002)
    assert histogram_quantile(0.99, buckets) == pytest.approx(0.00396)  # 2 + 2 * 9.8 / 10 ms
    # Beyond the last finite bound: that bound, as histogram_quantile answers.
    assert histogram_quantile(0.99, {0.001: 1.0, INF: 2.0}) == pytest.approx(0.001)
    assert histogram_quantile(0.5, {0.001: 0.0, INF: 0.0}) is None
    assert histogram_quantile(0.5, {}) is None


def test_increases_survive_a_server_restart() -> None:
    before = {0.001: 5.0, INF: 9.0}
    assert histogram_increase(before, {0.001: 6.0, INF: 12.0}) == {0.001: 1.0, INF: 3.0}
    # Counts went down: the server restarted, everything it counted since is new.
    assert histogram_increase(before, {0.001: 1.0, INF: 2.0}) == {0.001: 1.0, INF: 2.0}


def test_history_is_bounded_to_its_window() -> None:
    history = MetricsHistory(window_seconds=10.0, interval_seconds=1.0)
    for at in range(100):
        history.add(MetricsSample(float(at), None, None, None, None, None, at, 0))
    kept = history.samples(now=99.0)
    assert [s.at for s in kept] == [float(at) for at in range(89, 100)]
    assert len(history.samples(now=200.0)) == 0


def test_a_stale_indexing_report_is_a_gap() -> None:
    report = {
        "items_per_second": 42.0,
        "queue_items": 3.0,
        "checked_at": "2026-01-01T00:00:00+00:00",
    }
    at = time.time()
    stale = sample_from(None, report, (7, 2), now=at, max_report_age=12.0)
    assert (stale.indexing_passages_per_second, stale.worker_items_waiting) == (None, 7)
    assert stale.worker_items_running == 2
    fresh_report = report | {
        "checked_at": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(at))
    }
    fresh = sample_from(None, fresh_report, None, now=at, max_report_age=12.0)
    assert (fresh.indexing_passages_per_second, fresh.indexing_queue_items) == (42.0, 3.0)
    assert fresh.worker_items_waiting is None  # the database could not be read


def _metrics(server: ServerProcess) -> str:
    return httpx.get(f"{server.url}/metrics", timeout=5).text


def test_query_latency_quantiles_from_a_real_inference_server(
    inference_server: ServerProcess,
) -> None:
    published: list[ModelServerStatus] = []
    probe = StatusProbe(inference_server.url, published.append)
    client_ms = []
    with httpx.Client(timeout=10) as http:
        probe.probe(http)
        idle = probe.probe(http)
        for n in range(40):
            started = time.perf_counter()
            response = http.post(
                f"{inference_server.url}/encoder/bi-encoder-embed",
                json={"texts": [f"how do tides work {n}"], "text_type": "query"},
            )
            client_ms.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200
        busy = probe.probe(http)
    # The probe's own /api/ready and /metrics calls are not work.
    assert idle.requests_per_second == 0.0 and idle.latency_p50_ms is None
    assert busy.requests_per_second is not None and busy.requests_per_second > 0
    assert busy.items_per_second is not None and busy.items_per_second > 0
    assert busy.latency_p50_ms is not None and busy.latency_p99_ms is not None
    assert 0 < busy.latency_p50_ms <= busy.latency_p99_ms
    # The server's time is part of the client's; buckets double, so an estimate lies
    # within twice the true quantile.
    client_ms.sort()
    assert busy.latency_p50_ms <= 2 * client_ms[len(client_ms) // 2]
    assert busy.latency_p99_ms <= 2 * client_ms[-1]


def test_passages_and_queue_depth_from_a_real_indexing_server(
    indexing_server: ServerProcess,
) -> None:
    # Sized by this machine's speed, so the queue is still full when the metrics are read
    # on fast hardware too: about two seconds of work, in one request.
    sample = [f"passage {n} about herons, tides and lighthouses" for n in range(64)]
    started = time.monotonic()
    ModelClient(indexing_server.url, timeout=120).embed(sample, TextType.PASSAGE)
    count = min(2048, max(512, int(2.0 * len(sample) / (time.monotonic() - started))))
    embedder = ModelClient(indexing_server.url, timeout=120, batch_size=count)
    passages = [f"passage {n} about herons, tides and lighthouses" for n in range(count)]
    before = parse_metrics(_metrics(indexing_server))
    assert before.queued == 0.0
    seen_queued: list[float] = []
    done = threading.Event()

    def embed() -> None:
        try:
            embedder.embed(passages, TextType.PASSAGE)
        finally:
            done.set()

    thread = threading.Thread(target=embed)
    thread.start()
    try:
        # Watch the queue while the request is in the server (no sleep places the state:
        # read until the request is done or a non-empty queue was seen).
        while not done.is_set() and not seen_queued:
            queued = parse_metrics(_metrics(indexing_server)).queued
            if queued > 0:
                seen_queued.append(queued)
    finally:
        thread.join(120)
        embedder.close()
    after = parse_metrics(_metrics(indexing_server))
    assert after.items - before.items == len(passages)
    assert after.queued == 0.0
    assert seen_queued and 0 < seen_queued[0] <= len(passages)

    published: list[ModelServerStatus] = []
    probe = StatusProbe(indexing_server.url, published.append)
    with httpx.Client(timeout=10) as http:
        probe.probe(http)
        ModelClient(indexing_server.url, timeout=60).embed(passages[:64], TextType.PASSAGE)
        status = probe.probe(http)
    assert status.items_per_second is not None and status.items_per_second > 0
    assert status.queue_items == 0.0


@pytest.fixture(scope="module")
def keyed_api(backends: Backends, inference_server: ServerProcess) -> Iterator[ServerProcess]:
    with running(start_api(backends, inference_server.url, open_access=False)) as server:
        yield server


def test_the_api_serves_samples_of_both_servers(
    keyed_api: ServerProcess,
    backends: Backends,
    indexing_server: ServerProcess,
) -> None:
    url = f"{keyed_api.url}/api/stats/history"
    assert httpx.get(url).status_code == 401
    headers = {"Authorization": f"Bearer {create_api_key(backends)}"}
    # What a worker does: probe the indexing server and publish to Redis.
    redis = Redis.from_url(backends.redis_url)
    worker_probe = StatusProbe(
        indexing_server.url, redis_publisher(redis, INDEXING_STATUS_KEY, ttl_seconds=30)
    )
    worker_probe.start()
    embedder = ModelClient(indexing_server.url, timeout=60)
    try:
        deadline = time.monotonic() + 60
        samples: list[dict[str, object]] = []
        while time.monotonic() < deadline:
            httpx.post(
                f"{keyed_api.url}/api/search",
                json={"query": "herons and tides", "mode": "semantic"},
                headers=headers,
                timeout=30,
            ).raise_for_status()
            embedder.embed(["a passage about lighthouses"] * 32, TextType.PASSAGE)
            body = httpx.get(url, headers=headers, timeout=10).json()
            samples = body["samples"]
            if any(
                s["query_p50_ms"] is not None and s["indexing_passages_per_second"] for s in samples
            ):
                break
    finally:
        worker_probe.stop()
        embedder.close()
        redis.close()
    assert body["interval_seconds"] == 5.0 and body["window_seconds"] == 300.0
    complete = [
        s for s in samples if s["query_p50_ms"] is not None and s["indexing_passages_per_second"]
    ]
    assert complete, samples
    latest = complete[-1]
    assert isinstance(latest["query_p99_ms"], float)
    assert latest["query_p99_ms"] >= latest["query_p50_ms"]  # type: ignore[operator]
    assert (latest["worker_items_waiting"], latest["worker_items_running"]) == (0, 0)
    times = [float(str(s["at"])) for s in samples]
    assert times == sorted(times)
