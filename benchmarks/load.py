"""HTTP load: query latency clients (threads) and a bulk indexing client (its own process).

Every loop is bounded by a request count and a deadline. Bodies are serialized once up
front with orjson so the client's own CPU time stays small next to the server's.
"""

from __future__ import annotations

import itertools
import math
import multiprocessing
import queue
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.context import SpawnProcess
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event

import httpx
import numpy as np
import orjson

EMBED_PATH = "/encoder/bi-encoder-embed"
HEADERS = {"content-type": "application/json"}
DIMENSIONS = 384
IDLE_REOPEN_SECONDS = 2.0  # well under uvicorn's 5 s keep-alive timeout


def embed_body(texts: list[str], text_type: str) -> bytes:
    return orjson.dumps(
        {
            "texts": texts,
            "text_type": text_type,
            "max_context_length": 512,
            "normalize_embeddings": True,
        }
    )


def _post(client: httpx.Client, body: bytes, expected: int) -> None:
    response = client.post(EMBED_PATH, content=body, headers=HEADERS)
    response.raise_for_status()
    embeddings = orjson.loads(response.content)["embeddings"]
    if len(embeddings) != expected or len(embeddings[0]) != DIMENSIONS:
        raise ValueError(f"bad response shape from {client.base_url}")


def summarize(seconds: list[float]) -> dict[str, float]:
    """Latency percentiles in milliseconds."""
    if not seconds:
        return {"count": 0}
    ms = np.asarray(seconds) * 1000.0
    return {
        "count": len(seconds),
        "p50_ms": float(np.percentile(ms, 50)),
        "p90_ms": float(np.percentile(ms, 90)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": float(ms.mean()),
        "max_ms": float(ms.max()),
    }


@dataclass
class LatencyRun:
    seconds: list[float]
    wall_seconds: float
    client_cpu_seconds: float  # the client threads' own CPU time: part of every latency

    def summary(self) -> dict[str, float]:
        wall = self.wall_seconds
        return summarize(self.seconds) | {"per_second": len(self.seconds) / wall if wall else 0.0}

    @staticmethod
    def merge(runs: list[LatencyRun]) -> LatencyRun:
        return LatencyRun(
            [s for run in runs for s in run.seconds],
            sum(run.wall_seconds for run in runs),
            sum(run.client_cpu_seconds for run in runs),
        )


def round_trips(url: str, path: str, count: int) -> dict[str, float]:
    """Latency of a cheap GET: the HTTP stack's own cost, client included."""
    seconds: list[float] = []
    with httpx.Client(base_url=url, timeout=10.0) as client:
        for _ in range(count):
            started = time.perf_counter()
            client.get(path).raise_for_status()
            seconds.append(time.perf_counter() - started)
    return summarize(seconds[count // 10 :])  # the first requests open the connection


class QueryClients:
    """``concurrency`` keep-alive clients, each used by one thread at a time."""

    def __init__(self, url: str, concurrency: int) -> None:
        self.url = url
        self.concurrency = concurrency
        self.clients: list[httpx.Client] = []
        self.last_used = -math.inf

    def close(self) -> None:
        for client in self.clients:
            client.close()

    def _reopen(self, body: bytes) -> None:
        """Fresh connections, opened by an untimed request each: the servers close a
        keep-alive connection idle for 5 s (uvicorn's default), and a request sent as it
        closes fails."""
        self.close()
        self.clients = [
            httpx.Client(base_url=self.url, timeout=30.0) for _ in range(self.concurrency)
        ]
        for client in self.clients:
            _post(client, body, 1)

    def run(self, queries: list[str], *, passes: int, max_seconds: float) -> LatencyRun:
        """Each client sends one query at a time, taking the next from a shared sequence,
        until all passes are sent or time is up."""
        bodies = [embed_body([text], "query") for text in queries]
        if time.monotonic() - self.last_used > IDLE_REOPEN_SECONDS:
            self._reopen(bodies[0])
        sequence = iter(range(len(bodies) * passes))
        lock = threading.Lock()
        deadline = time.monotonic() + max_seconds

        def client_loop(client: httpx.Client) -> LatencyRun:
            seconds: list[float] = []
            cpu_started = time.thread_time()
            while time.monotonic() < deadline:
                with lock:
                    index = next(sequence, None)
                if index is None:
                    break
                started = time.perf_counter()
                _post(client, bodies[index % len(bodies)], 1)
                seconds.append(time.perf_counter() - started)
            return LatencyRun(seconds, 0.0, time.thread_time() - cpu_started)

        started = time.perf_counter()
        with ThreadPoolExecutor(len(self.clients)) as pool:
            futures = [pool.submit(client_loop, client) for client in self.clients]
            merged = LatencyRun.merge([future.result() for future in futures])
        merged.wall_seconds = time.perf_counter() - started
        self.last_used = time.monotonic()
        return merged


@contextmanager
def query_clients(url: str, concurrency: int) -> Iterator[QueryClients]:
    clients = QueryClients(url, concurrency)
    try:
        yield clients
    finally:
        clients.close()


def query_latencies(
    url: str, queries: list[str], *, passes: int, concurrency: int, max_seconds: float
) -> LatencyRun:
    with query_clients(url, concurrency) as clients:
        return clients.run(queries, passes=passes, max_seconds=max_seconds)


def bulk_worker(
    url: str,
    passages: list[str],
    batch_size: int,
    clients: int,
    max_batches: int,
    max_seconds: float,
    stop: Event,
    started: Event,
    results: Queue[dict[str, object]],
) -> None:
    """Process entry: ``clients`` keep-alive clients post batches (cycling through the
    passages) until ``max_batches`` are done, ``stop`` is set or time is up."""
    bodies = [
        (embed_body(passages[i : i + batch_size], "passage"), len(passages[i : i + batch_size]))
        for i in range(0, len(passages), batch_size)
    ]
    counter = itertools.count()
    lock = threading.Lock()
    deadline = time.monotonic() + max_seconds
    done = [0] * clients

    def client_loop(slot: int) -> None:
        with httpx.Client(base_url=url, timeout=max_seconds) as client:
            while not stop.is_set() and time.monotonic() < deadline:
                with lock:
                    index = next(counter)
                if index >= max_batches:
                    return
                body, count = bodies[index % len(bodies)]
                started.set()
                _post(client, body, count)
                done[slot] += count

    began = time.perf_counter()
    try:
        with ThreadPoolExecutor(clients) as pool:
            for future in [pool.submit(client_loop, slot) for slot in range(clients)]:
                future.result()
    except (httpx.HTTPError, ValueError) as exc:
        results.put({"error": f"{type(exc).__name__}: {exc}"})
        return
    elapsed = time.perf_counter() - began
    passages_done = sum(done)
    results.put(
        {"passages": passages_done, "seconds": elapsed, "per_second": passages_done / elapsed}
    )


@dataclass
class BulkLoad:
    process: SpawnProcess
    stop: Event
    started: Event
    results: Queue[dict[str, object]]

    def wait_started(self, timeout: float = 30.0) -> None:
        if not self.started.wait(timeout):
            raise RuntimeError("bulk client did not start")

    def result(self, timeout: float) -> dict[str, object]:
        """Wait for the worker to finish (it finishes its in-flight requests first)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                outcome = self.results.get(timeout=1.0)
            except queue.Empty:
                if not self.process.is_alive() and self.results.empty():
                    raise RuntimeError(
                        f"bulk client exited with code {self.process.exitcode}"
                    ) from None
                continue
            if "error" in outcome:
                raise RuntimeError(f"bulk client failed: {outcome['error']}")
            return outcome
        raise RuntimeError(f"bulk client gave no result within {timeout:.0f}s")


@contextmanager
def bulk_load(
    url: str,
    passages: list[str],
    *,
    batch_size: int,
    clients: int,
    max_batches: int,
    max_seconds: float,
) -> Iterator[BulkLoad]:
    """Run the bulk client in a separate process so its JSON work never holds the GIL of
    the process timing queries. The process is always ended on leaving the block."""
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    started = context.Event()
    results: Queue[dict[str, object]] = context.Queue()
    process = context.Process(
        target=bulk_worker,
        args=(url, passages, batch_size, clients, max_batches, max_seconds, stop, started, results),
        daemon=True,
    )
    process.start()
    try:
        yield BulkLoad(process, stop, started, results)
    finally:
        # After `result` the worker is already done; on an error path, don't wait for it to
        # drain its in-flight batches.
        stop.set()
        process.join(10)
        if process.is_alive():
            process.terminate()
            process.join(10)
        if process.is_alive():
            process.kill()
            process.join()
