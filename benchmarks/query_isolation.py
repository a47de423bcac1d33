"""The inference server's query latency idle and beside a saturated indexing server, and the
indexing server against its floor: variants side by side, in alternating rounds.

    python -m benchmarks.query_isolation [--before-src DIR] [--rounds 3]

Each variant is a pair of model servers started with the environment `tandem up` gives
them (int8, shared CPUs, indexing at the lowest CPU priority), all pairs up at once:
* ``signal``: this tree, both roles sharing the query signal file, as `tandem up` runs them;
* ``no signal``: this tree without it, as two roles on different hosts run;
* ``before`` (with ``--before-src``): the servers of another source tree, e.g. a
  `git archive` of the commit before a change.
Every round measures the floors in-process (one query on 1 thread; requests of 64
passages on 2 threads at the indexing role's priority), then each variant in turn (the
order rotates per round): sequential queries idle, the same while 3 bulk clients keep its
indexing server busy, and requests of 64 passages alone. "Idle" is a warm stack: warm-up
requests first, then until the started processes' CPU use settles. Results:
benchmarks/results/query_isolation.json.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from benchmarks import results_io, server_metrics
from benchmarks.corpus import make_passages, make_queries
from benchmarks.load import (
    DIMENSIONS,
    EMBED_PATH,
    LatencyRun,
    bulk_load,
    embed_body,
    query_latencies,
    summarize,
)
from benchmarks.processes import (
    FloorSetup,
    FloorWorker,
    Server,
    cpu_seconds,
    floor_worker,
    free_port,
    running,
    tandem_argv,
    unwind_on_sigterm,
    wait_settled,
)
from tandem.config import ModelServerSettings
from tandem.local.stack import model_server_specs

BATCH = 64
BULK_CLIENTS = 3
YIELD_METRIC = "tandem_query_yield_seconds_total"


class Pair:
    def __init__(self, label: str, inference: Server, indexing: Server) -> None:
        self.label = label
        self.inference = inference
        self.indexing = indexing
        self.idle: list[LatencyRun] = []
        self.idle_raw: list[float] = []
        self.saturated: list[LatencyRun] = []
        self.bulk_during: list[dict[str, object]] = []
        self.indexed = {"passages": 0.0, "seconds": 0.0, "cpu_seconds": 0.0}
        self.yield_seconds = 0.0


def _start(
    stack: contextlib.ExitStack, label: str, log_dir: Path, source: Path | None, signal_on: bool
) -> Pair:
    run_dir = log_dir / f"run-{label.replace(' ', '-')}" if signal_on else None
    specs, _ = model_server_specs(ModelServerSettings(), run_dir=run_dir)
    env = {spec.name.removesuffix("-model-server"): spec.env for spec in specs}
    extra = {"PYTHONPATH": f"{source / 'src'}{os.pathsep}{source}"} if source else {}
    servers = [
        stack.enter_context(
            running(f"{label}-{role}", tandem_argv(role, free_port()), log_dir, env[role] | extra)
        )
        for role in ("inference", "indexing")
    ]
    return Pair(label, *servers)


def _settle(pairs: list[Pair]) -> float:
    return wait_settled([s.process.pid for p in pairs for s in (p.inference, p.indexing)])


def _warm(pair: Pair, queries: list[str], passages: list[str]) -> None:
    query_latencies(pair.inference.url, queries[:50], passes=1, concurrency=1, max_seconds=30)
    with bulk_load(
        pair.indexing.url, passages, batch_size=BATCH, clients=1, max_batches=1, max_seconds=600
    ) as bulk:
        bulk.result(timeout=630)


def raw_socket_latencies(url: str, queries: list[str], max_seconds: float) -> list[float]:
    """Sequential queries over one keep-alive socket, each request in one write and the
    response read by Content-Length: the server's path without an HTTP client library's
    own CPU time (httpx costs a few hundred microseconds a request)."""
    host, _, port = url.removeprefix("http://").partition(":")
    seconds: list[float] = []
    deadline = time.monotonic() + max_seconds
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for text in queries:
            if time.monotonic() > deadline:
                break
            body = embed_body([text], "query")
            head = (
                f"POST {EMBED_PATH} HTTP/1.1\r\nhost: {host}\r\n"
                f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
            )
            started = time.perf_counter()
            sock.sendall(head.encode() + body)
            received = b""
            while b"\r\n\r\n" not in received:
                received += sock.recv(65536)
            status_and_headers, _, content = received.partition(b"\r\n\r\n")
            lines = status_and_headers.decode("latin-1").split("\r\n")
            headers = dict(line.lower().split(": ", 1) for line in lines[1:])
            while len(content) < int(headers["content-length"]):
                content += sock.recv(65536)
            seconds.append(time.perf_counter() - started)
            if " 200 " not in lines[0]:
                raise ValueError(f"bad response from {url}: {lines[0]}")
            if len(orjson.loads(content)["embeddings"][0]) != DIMENSIONS:
                raise ValueError(f"bad response shape from {url}")
    return seconds


def _measure(pair: Pair, queries: list[str], passages: list[str], index_batches: int) -> None:
    def sequential() -> LatencyRun:
        return query_latencies(pair.inference.url, queries, passes=1, concurrency=1, max_seconds=30)

    pair.idle.append(sequential())
    pair.idle_raw += raw_socket_latencies(pair.inference.url, queries, max_seconds=30)
    yielded = server_metrics.scrape(pair.indexing.url).get(YIELD_METRIC, 0.0)
    with bulk_load(
        pair.indexing.url,
        passages,
        batch_size=BATCH,
        clients=BULK_CLIENTS,
        max_batches=10**6,
        max_seconds=900,
    ) as bulk:
        bulk.wait_started()
        time.sleep(2.0)  # every bulk client's request is in the server
        pair.saturated.append(sequential())
        bulk.stop.set()
        pair.bulk_during.append(bulk.result(timeout=900))
    pair.yield_seconds += server_metrics.scrape(pair.indexing.url).get(YIELD_METRIC, 0.0) - yielded
    pid = pair.indexing.process.pid
    cpu_before = cpu_seconds(pid)
    with bulk_load(
        pair.indexing.url,
        passages,
        batch_size=BATCH,
        clients=index_batches,
        max_batches=index_batches,
        max_seconds=900,
    ) as bulk:
        outcome = bulk.result(timeout=930)
    pair.indexed["cpu_seconds"] += cpu_seconds(pid) - cpu_before
    pair.indexed["passages"] += float(str(outcome["passages"]))
    pair.indexed["seconds"] += float(str(outcome["seconds"]))


def _floors(
    query_floor: FloorWorker, index_floor: FloorWorker, queries: list[str], passages: list[str]
) -> tuple[list[float], dict[str, float]]:
    single = query_floor.measure("queries", queries, 60)["single_seconds"]
    assert isinstance(single, list)
    cpu_before = cpu_seconds(index_floor.process.pid)
    raw = index_floor.measure("passages", passages[:BATCH], 900)
    return [float(s) for s in single], {
        "passages": float(str(raw["passages"])),
        "seconds": float(str(raw["seconds"])),
        "cpu_seconds": cpu_seconds(index_floor.process.pid) - cpu_before,
    }


def _ms(run: dict[str, float]) -> dict[str, float]:
    return {k: round(run[k], 3) for k in ("p50_ms", "p99_ms", "count") if k in run}


def _report(pair: Pair, query_floor: dict[str, float], index_floor: dict[str, float]) -> Any:
    idle = LatencyRun.merge(pair.idle).summary()
    saturated = LatencyRun.merge(pair.saturated).summary()
    done = pair.indexed
    bulk = sum(float(str(b["passages"])) for b in pair.bulk_during)
    bulk_seconds = sum(float(str(b["seconds"])) for b in pair.bulk_during)
    limit = 1.3 * query_floor["p50_ms"] + 1.0
    return {
        "query_idle": _ms(idle),
        "query_idle_raw_socket": _ms(summarize(pair.idle_raw)),
        "query_saturated": _ms(saturated),
        "saturated_p99_vs_idle_p99": round(saturated["p99_ms"] / idle["p99_ms"], 3),
        "idle_p50_limit_ms": round(limit, 3),
        "index_per_second": round(done["passages"] / done["seconds"], 2),
        "index_vs_floor": round(done["passages"] / done["seconds"] / index_floor["per_second"], 3),
        "index_per_cpu_second_vs_floor": round(
            done["passages"] / done["cpu_seconds"] / index_floor["per_cpu_second"], 3
        ),
        "bulk_per_second_while_queried": round(bulk / bulk_seconds, 2),
        "indexing_yield_seconds": round(pair.yield_seconds, 2),
        "targets_met": {
            "idle_p50": idle["p50_ms"] <= limit,
            "saturated_p99": saturated["p99_ms"] <= 1.5 * idle["p99_ms"],
            "index_vs_floor": done["passages"] / done["seconds"] >= 0.9 * index_floor["per_second"],
        },
    }


@contextlib.contextmanager
def _floor_workers() -> Iterator[tuple[FloorWorker, FloorWorker]]:
    precision = ModelServerSettings().precision.value
    with (
        floor_worker("inference", FloorSetup("", 1, precision, "normal")) as queries,
        floor_worker("indexing", FloorSetup("", 2, precision, "idle")) as passages,
    ):
        yield queries, passages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before-src", type=Path, help="source tree of the 'before' servers")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--index-batches", type=int, default=2, help="requests of 64, per round")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    unwind_on_sigterm()
    queries, passages = make_queries(args.queries), make_passages(BATCH * BULK_CLIENTS * 2)
    load_at_start = os.getloadavg()
    floor_single: list[float] = []
    index_floor = {"passages": 0.0, "seconds": 0.0, "cpu_seconds": 0.0}
    with (
        tempfile.TemporaryDirectory(prefix="tandem-isolation-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        log_dir = Path(tmp)
        pairs = [_start(stack, "signal", log_dir, None, True)]
        pairs.append(_start(stack, "no signal", log_dir, None, False))
        if args.before_src:
            pairs.append(_start(stack, "before", log_dir, args.before_src, False))
        for pair in pairs:
            pair.inference.wait_ready()
            pair.indexing.wait_ready()
            _warm(pair, queries, passages)
        settled = _settle(pairs)
        query_floor_worker, index_floor_worker = stack.enter_context(_floor_workers())
        for round_number in range(args.rounds):
            print(f"round {round_number + 1}/{args.rounds}", flush=True)
            single, indexed = _floors(query_floor_worker, index_floor_worker, queries, passages)
            floor_single += single
            for key, value in indexed.items():
                index_floor[key] += value
            shift = round_number % len(pairs)
            for pair in pairs[shift:] + pairs[:shift]:
                _measure(pair, queries, passages, args.index_batches)
    floor_query = summarize(floor_single)
    floor_index = {
        "per_second": index_floor["passages"] / index_floor["seconds"],
        "per_cpu_second": index_floor["passages"] / index_floor["cpu_seconds"],
    }
    result = {
        "rounds": args.rounds,
        "queries_per_measurement": args.queries,
        "settled_after_seconds": round(settled, 1),
        "load_average_at_start": list(load_at_start),
        "floor": {
            "query": _ms(floor_query),
            "index_per_second": round(floor_index["per_second"], 2),
            "index_per_cpu_second": round(floor_index["per_cpu_second"], 2),
        },
        "variants": {pair.label: _report(pair, floor_query, floor_index) for pair in pairs},
    }
    path = results_io.write_result("query_isolation", result, args.output)
    print(path.read_text())


if __name__ == "__main__":
    main()
