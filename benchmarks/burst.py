"""A burst of embedding requests at an inference server, with searches at the API beside it.

Each wave sends `10 x capacity` query items at once (capacity: the server's queue bound,
`max_concurrent_requests` in its `/info`), split into requests of `items_per_request`,
every one of them on its own connection. Meanwhile search clients keep asking the API
server (which embeds its queries on that same inference server) and a sampler reads the
server's resident memory from /proc. Every request has a timeout, so a hang shows up as
a `timeout` answer, never as a stuck run. Used by `load_burst.py` and by
tests/test_load_burst.py.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from benchmarks.processes import cpu_seconds

TIMEOUT_STATUS = 0  # stands for "no answer within the timeout" among HTTP statuses


@dataclass(frozen=True)
class Answer:
    status: int  # HTTP status, or TIMEOUT_STATUS
    seconds: float
    retry_after: str | None = None
    degraded: bool | None = None  # searches only


@dataclass
class BurstOutcome:
    capacity: int
    items_per_request: int
    waves: int = 0
    embeds: list[Answer] = field(default_factory=list)
    searches: list[Answer] = field(default_factory=list)
    rss_before_bytes: int = 0
    rss_peak_bytes: int = 0
    wall_seconds: float = 0.0
    server_cpu_seconds: float = 0.0  # the inference server's, during the burst
    client_cpu_seconds: float = 0.0  # this process's (the burst and search clients)


def capacity(inference_url: str) -> int:
    """The server's queue bound: items it holds waiting before it answers 429."""
    info = httpx.get(f"{inference_url}/info", timeout=10).json()
    return int(info["max_concurrent_requests"])


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


class RssSampler:
    """The largest resident size seen while running, sampled every `interval` seconds."""

    def __init__(self, pid: int, interval: float = 0.01) -> None:
        self._pid = pid
        self._interval = interval
        self._stop = threading.Event()
        self.peak = rss_bytes(pid)
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.peak = max(self.peak, rss_bytes(self._pid))

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.peak = max(self.peak, rss_bytes(self._pid))


async def _timed_post(
    client: httpx.AsyncClient, url: str, body: dict[str, object], timeout: float
) -> tuple[httpx.Response | None, float]:
    started = time.perf_counter()
    try:
        response = await client.post(url, json=body, timeout=timeout)
    except httpx.TimeoutException:
        return None, time.perf_counter() - started
    return response, time.perf_counter() - started


async def _embed(client: httpx.AsyncClient, url: str, texts: list[str], timeout: float) -> Answer:
    body: dict[str, object] = {"texts": texts, "text_type": "query"}
    response, seconds = await _timed_post(client, url, body, timeout)
    if response is None:
        return Answer(TIMEOUT_STATUS, seconds)
    if response.status_code == 200:
        assert len(response.json()["embeddings"]) == len(texts)
    return Answer(response.status_code, seconds, response.headers.get("retry-after"))


async def _search_loop(
    client: httpx.AsyncClient,
    api_url: str,
    queries: list[str],
    done: asyncio.Event,
    timeout: float,
    answers: list[Answer],
) -> None:
    n = 0
    while not done.is_set():
        body: dict[str, object] = {"query": queries[n % len(queries)], "mode": "hybrid"}
        n += 1
        response, seconds = await _timed_post(client, f"{api_url}/api/search", body, timeout)
        if response is None:
            answers.append(Answer(TIMEOUT_STATUS, seconds))
            continue
        degraded = response.json().get("degraded") if response.status_code == 200 else None
        answers.append(
            Answer(response.status_code, seconds, response.headers.get("retry-after"), degraded)
        )


async def _burst(
    outcome: BurstOutcome,
    inference_url: str,
    api_url: str | None,
    queries: list[str],
    *,
    max_waves: int,
    max_seconds: float,
    search_clients: int,
    timeout: float,
    until: Callable[[BurstOutcome], bool] | None,
) -> None:
    per_request = outcome.items_per_request
    requests = max(1, 10 * outcome.capacity // per_request)
    embed_url = f"{inference_url}/encoder/bi-encoder-embed"
    bodies = [
        [queries[(r * per_request + i) % len(queries)] for i in range(per_request)]
        for r in range(requests)
    ]
    # Every request of a wave on its own connection: the server sees them all at once.
    limits = httpx.Limits(max_connections=requests + search_clients, max_keepalive_connections=0)
    async with httpx.AsyncClient(limits=limits) as client:
        done = asyncio.Event()
        searching = [
            asyncio.create_task(
                _search_loop(client, api_url, queries, done, timeout, outcome.searches)
            )
            for _ in range(search_clients)
            if api_url is not None
        ]
        deadline = time.monotonic() + max_seconds
        try:
            while _more_waves(outcome, max_waves, until) and time.monotonic() < deadline:
                wave = await asyncio.gather(
                    *(_embed(client, embed_url, texts, timeout) for texts in bodies)
                )
                outcome.embeds.extend(wave)
                outcome.waves += 1
        finally:
            done.set()
            await asyncio.gather(*searching)


def _more_waves(
    outcome: BurstOutcome, max_waves: int, until: Callable[[BurstOutcome], bool] | None
) -> bool:
    if outcome.waves < max_waves:
        return True
    # Past max_waves only while a condition the caller waits for has not come true.
    return until is not None and not until(outcome)


async def _searches_only(
    api_url: str, queries: list[str], clients: int, seconds: float, timeout: float
) -> list[Answer]:
    answers: list[Answer] = []
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=clients)) as client:
        done = asyncio.Event()
        loops = [
            asyncio.create_task(_search_loop(client, api_url, queries, done, timeout, answers))
            for _ in range(clients)
        ]
        await asyncio.sleep(seconds)  # a measurement window, not a wait for a state
        done.set()
        await asyncio.gather(*loops)
    return answers


async def _sequential_embeds(url: str, bodies: list[list[str]], timeout: float) -> list[Answer]:
    async with httpx.AsyncClient() as client:
        return [await _embed(client, url, texts, timeout) for texts in bodies]


def run_sequential_embeds(
    inference_url: str,
    queries: list[str],
    *,
    items_per_request: int,
    count: int,
    timeout: float = 30.0,
) -> list[Answer]:
    """The burst's requests sent one at a time: what an admitted request costs unloaded."""
    bodies = [
        [queries[(r * items_per_request + i) % len(queries)] for i in range(items_per_request)]
        for r in range(count)
    ]
    url = f"{inference_url}/encoder/bi-encoder-embed"
    return asyncio.run(_sequential_embeds(url, bodies, timeout))


def run_searches(
    api_url: str, queries: list[str], *, clients: int, seconds: float, timeout: float = 30.0
) -> list[Answer]:
    """The API's searches with no burst: the reference the burst's searches are set against."""
    return asyncio.run(_searches_only(api_url, queries, clients, seconds, timeout))


def run_burst(
    inference_url: str,
    inference_pid: int,
    api_url: str | None,
    queries: list[str],
    *,
    items_per_request: int,
    max_waves: int,
    max_seconds: float,
    search_clients: int = 8,
    timeout: float = 30.0,
    until: Callable[[BurstOutcome], bool] | None = None,
) -> BurstOutcome:
    """Waves of 10 x capacity items: `max_waves` of them, then more while `until` (if
    given) is false, and never past `max_seconds`.

    Whether a search lands while the queue is full is a matter of timing (on a slow
    machine a few searches can all fall between waves), so a caller that needs one to
    have met a refusal passes that as `until` rather than a larger fixed wave count.
    """
    outcome = BurstOutcome(capacity(inference_url), items_per_request)
    outcome.rss_before_bytes = rss_bytes(inference_pid)
    server_cpu, client_cpu = cpu_seconds(inference_pid), time.process_time()
    started = time.perf_counter()
    with RssSampler(inference_pid) as sampler:
        asyncio.run(
            _burst(
                outcome,
                inference_url,
                api_url,
                queries,
                max_waves=max_waves,
                max_seconds=max_seconds,
                search_clients=search_clients,
                timeout=timeout,
                until=until,
            )
        )
    outcome.rss_peak_bytes = sampler.peak
    outcome.wall_seconds = time.perf_counter() - started
    outcome.server_cpu_seconds = cpu_seconds(inference_pid) - server_cpu
    outcome.client_cpu_seconds = time.process_time() - client_cpu
    return outcome
