"""Admission before tokenizing, over real HTTP: while the queue is busy, a burst of large
requests (2048 texts, 6.6 MB each) is refused with 429 at the cost of parsing its bodies,
not of tokenizing them, so the server's memory and its queued request's latency stay put.

Measured on the 2-core machine (6 such requests against 256 queued passages): before, the
429s took 24-76 s (every body was tokenized first, and one that arrived once the queue
drained ran for 290 s) and the server's peak RSS went from 247 MB to 3.5 GB; after, every
429 came in about 1 s and the peak RSS grew by 77 MB (the bodies themselves).
"""

from __future__ import annotations

import concurrent.futures
import json
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.support import ServerProcess, model_server

pytestmark = pytest.mark.slow

QUEUE_BOUND = 256
BURST = 4
# What the burst may cost at most: parsing four bodies, on a loaded machine. Tokenizing
# them took tens of seconds and gigabytes.
MAX_REFUSAL_SECONDS = 10.0
MAX_GROWTH_BYTES = 400 * 2**20
IDLE = 'tandem_queue_items{model="all-MiniLM-L6-v2"} 0.0'
PASSAGE = "tides rise and fall twice a day as the moon pulls the oceans " * 20


def peak_rss(server: ServerProcess) -> int:
    status = Path(f"/proc/{server.process.pid}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


def embed(server: ServerProcess, body: bytes) -> httpx.Response:
    return httpx.post(
        f"{server.url}/encoder/bi-encoder-embed",
        content=body,
        headers={"content-type": "application/json"},
        timeout=600,
    )


def queue_is_idle(server: ServerProcess) -> bool:
    return IDLE in httpx.get(f"{server.url}/metrics").text


def test_a_burst_over_the_queue_bound_is_refused_before_tokenizing(
    model_cache: Path, server_logs: Path
) -> None:
    env = {"TANDEM_MAX_QUEUE_ITEMS": str(QUEUE_BOUND), "TANDEM_THREADS": "1"}
    with model_server("indexing", server_logs, env) as server:
        before = peak_rss(server)
        # The queue's bound, filled by one slow request of long passages.
        busy = json.dumps({"texts": [PASSAGE] * QUEUE_BOUND, "max_context_length": 512})
        answered: dict[str, httpx.Response] = {}
        filler = threading.Thread(
            target=lambda: answered.setdefault("busy", embed(server, busy.encode()))
        )
        filler.start()
        deadline = time.monotonic() + 60
        while queue_is_idle(server):
            assert time.monotonic() < deadline, "the busy request never reached the queue"
            time.sleep(0.01)

        texts = [f"word{i} " * 400 for i in range(2048)]
        large = json.dumps({"texts": texts, "max_context_length": 512}).encode()
        assert 6 * 2**20 < len(large) < 8 * 2**20  # under TANDEM_MAX_REQUEST_BYTES

        def refused(_: int) -> tuple[int, float]:
            started = time.monotonic()
            response = embed(server, large)
            return response.status_code, time.monotonic() - started

        with concurrent.futures.ThreadPoolExecutor(BURST) as pool:
            results = list(pool.map(refused, range(BURST)))
        assert not queue_is_idle(server), "the busy request ended during the burst"
        grown = peak_rss(server) - before
        filler.join(600)

        assert [status for status, _ in results] == [429] * BURST, results
        assert max(seconds for _, seconds in results) < MAX_REFUSAL_SECONDS, results
        assert grown < MAX_GROWTH_BYTES, f"peak RSS grew by {grown / 2**20:.0f} MiB"
        assert answered["busy"].status_code == 200
        assert len(answered["busy"].json()["embeddings"]) == QUEUE_BOUND

        # A request refused after tokenizing gives its place back, as does a finished one.
        too_long = httpx.post(
            f"{server.url}/embed", json={"inputs": ["word " * 600], "truncate": False}
        )
        assert too_long.status_code == 413
        assert queue_is_idle(server)
