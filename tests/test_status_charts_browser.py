"""The status page's live charts in real headless Chromium while an ingest runs, on the real
stack: PostgreSQL, Redis, both model servers, the API server, a worker and `tandem web`.

The screenshot test-output/screenshots/status-charts-during-ingest.png is taken while the
upload is still being indexed and searches are running.
"""

from __future__ import annotations

import random
import re
import threading
from collections.abc import Iterator

import httpx
import pytest
from selenium.webdriver import Chrome

from tests.browser import Page, require_chromium
from tests.e2e_support import Backends, running, start_worker
from tests.fake_model_server import overloaded_model_server
from tests.support import ServerProcess

pytestmark = pytest.mark.slow

WORDS = [
    "heron",
    "tide",
    "lighthouse",
    "keeper",
    "harbour",
    "estuary",
    "wetland",
    "current",
    "salt",
    "marsh",
    "reed",
    "wind",
    "storm",
    "beacon",
    "channel",
    "pilot",
    "shoal",
    "dune",
    "gull",
    "cormorant",
    "mudflat",
    "ebb",
    "flood",
    "moon",
    "gravity",
    "basin",
    "ferry",
    "anchor",
    "rope",
    "lantern",
    "clockwork",
    "wick",
    "signal",
    "fog",
    "horn",
    "coast",
    "cliff",
]


def _documents(count: int, words: int) -> dict[str, bytes]:
    """Long, varied documents: enough chunks that indexing outlasts several samples."""
    rng = random.Random(11)
    return {
        f"coast-{n:03d}.txt": " ".join(rng.choice(WORDS) for _ in range(words)).encode()
        for n in range(count)
    }


@pytest.fixture(scope="module", autouse=True)
def _chromium() -> None:
    require_chromium()


@pytest.fixture(scope="module")
def worker(backends: Backends, indexing_server: ServerProcess) -> Iterator[ServerProcess]:
    """A worker whose indexing server answers each batch a second late: the ingest outlasts
    the charts' samples on any hardware (the embeddings and metrics are the real server's)."""
    with (
        overloaded_model_server(indexing_server.url, refuse=0, post_delay=1.0) as paced,
        running(start_worker(backends, paced.url)) as process,
    ):
        yield process


def _points(page: Page, chart: str) -> int:
    return int(page.find(f"#{chart} svg").get_attribute("data-points") or 0)


def _legend_value(page: Page, chart: str, series: str) -> float | None:
    text = page.find(f'#{chart} li[data-series="{series}"] strong').text
    match = re.match(r"[\d.,]+", text)
    return float(match[0].replace(",", "")) if match else None


def _keep_searching(api: ServerProcess, stop: threading.Event, answered: list[int]) -> None:
    """Queries through the API, so the inference server has latencies to chart."""
    with httpx.Client(timeout=30) as client:
        n = 0
        while not stop.is_set():
            response = client.post(
                f"{api.url}/api/search",
                json={"query": f"{WORDS[n % len(WORDS)]} at the coast", "mode": "semantic"},
            )
            answered.append(response.status_code)
            n += 1
            stop.wait(0.2)  # a steady trickle of queries, not a flood


def test_charts_move_while_an_ingest_runs(
    browser: Chrome, web: ServerProcess, api: ServerProcess, worker: ServerProcess
) -> None:
    page = Page(browser, web.url, timeout=150.0)
    files = _documents(count=160, words=1400)
    accepted = httpx.post(
        f"{api.url}/api/documents",
        files=[("files", (name, data, "text/plain")) for name, data in files.items()],
        timeout=120,
    )
    assert accepted.status_code == 202, accepted.text
    attempt_id = accepted.json()["attempt_id"]
    stop = threading.Event()
    answered: list[int] = []
    searcher = threading.Thread(target=_keep_searching, args=(api, stop, answered))
    searcher.start()
    try:
        page.open("#/status")
        page.wait_for("#server-inference", "Ready")
        # Each chart needs two probes of its server before the first rate or quantile;
        # five samples of throughput show a stretch of the ingest, not only its start.
        page.wait_until(
            lambda: (
                (
                    _points(page, "chart-indexing-throughput") >= 5
                    and (
                        _legend_value(
                            page, "chart-indexing-throughput", "indexing_passages_per_second"
                        )
                        or 0
                    )
                    > 0
                    and _points(page, "chart-query-latency") >= 2
                    and _points(page, "chart-worker-queue") >= 2
                )
                or None
            ),
            "charts with indexing throughput, query latency and the worker queue",
        )
        shot = page.screenshot("status-charts-during-ingest")
        attempt = httpx.get(f"{api.url}/api/index-attempts/{attempt_id}", timeout=10).json()
    finally:
        stop.set()
        searcher.join(30)
    assert attempt["status"] in ("queued", "running"), "the ingest ended before the screenshot"
    assert shot.stat().st_size > 10_000
    assert answered and set(answered) == {200}
    p50 = _legend_value(page, "chart-query-latency", "query_p50_ms")
    p99 = _legend_value(page, "chart-query-latency", "query_p99_ms")
    assert p50 is not None and p99 is not None and 0 < p50 <= p99
    # A line for each series, drawn through as many points as the chart reports.
    path = page.find("#chart-indexing-throughput path.series-rate")
    commands = re.findall(r"[ML]", path.get_attribute("d") or "")
    assert len(commands) == int(path.get_attribute("data-points") or 0) >= 2
    label = page.find("#chart-query-latency svg").get_attribute("aria-label") or ""
    assert label.startswith("Query latency, last 5 minutes: p99 ")
    waiting = _legend_value(page, "chart-worker-queue", "worker_items_waiting")
    assert waiting is not None and 0 < waiting < 160  # files of the upload not yet indexed
    # The count card tells the same (files in PostgreSQL's work queue, not Redis messages).
    count = page.find("#count-queue .big-number").text.replace(",", "")
    assert count.isdigit() and int(count) > 0
    assert page.leave() == []  # no CSP violation, no failed script or stylesheet
