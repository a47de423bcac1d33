"""The benchmark's measurements, shared by Tandem and the baseline.

The machine is shared and noisy, so a floor and the HTTP measurement it is compared with
run in alternating rounds: noise from other tenants then lands on both sides alike.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from statistics import fmean

from benchmarks import server_metrics
from benchmarks.load import (
    LatencyRun,
    bulk_load,
    query_clients,
    query_latencies,
    round_trips,
    summarize,
)
from benchmarks.processes import FloorWorker, cpu_seconds


@dataclass(frozen=True)
class Workload:
    queries: int
    rounds: int  # query rounds: one pass over the queries each
    passages: int
    index_rounds: int
    floor_passages_per_round: int  # the floor's sample of each indexing round's chunk
    baseline_passages: int  # the baseline indexes a prefix: at its speed all would not fit
    batch_size: int = 64
    bulk_clients: int = 3  # enough that a batch is always queued behind the running one
    concurrency: int = 4
    block: int = 20  # sequential queries per floor/HTTP alternation
    index_phase_seconds: float = 280.0  # no new indexing round starts after this
    saturated_passes: int = 2
    settle_seconds: float = 2.0  # bulk load running before saturated queries are timed
    max_query_seconds: float = 25.0  # per latency measurement (binds only the baseline)
    max_index_seconds: float = 120.0  # per indexing round


@dataclass(frozen=True)
class Texts:
    queries: list[str]
    passages: list[str]


def _floats(raw: dict[str, object], key: str) -> list[float]:
    values = raw[key]
    assert isinstance(values, list)
    return [float(v) for v in values]


def _averaged(rows: list[dict[str, float]]) -> dict[str, float]:
    return {key: fmean(row[key] for row in rows) for key in rows[0]} if rows else {}


def query_section(
    url: str, texts: Texts, work: Workload, floor: FloorWorker | None, *, metrics: bool
) -> dict[str, object]:
    """Section 1. Per round: sequential queries in blocks, each block right after the floor
    ran the same queries (so both meet the same noise), then concurrent clients."""
    sequential: list[LatencyRun] = []
    concurrent: list[LatencyRun] = []
    floor_single: list[float] = []
    floor_batch4: list[float] = []
    round_ratios: list[float] = []
    sequential_split: list[dict[str, float]] = []
    concurrent_split: list[dict[str, float]] = []
    with query_clients(url, 1) as one, query_clients(url, work.concurrency) as crowd:
        for _ in range(work.rounds):
            round_floor: list[float] = []
            blocks: list[LatencyRun] = []
            before = server_metrics.scrape(url) if metrics else {}
            for start in range(0, len(texts.queries), work.block):
                block = texts.queries[start : start + work.block]
                if floor is not None:
                    raw = floor.measure("queries", block, work.max_query_seconds)
                    round_floor += _floats(raw, "single_seconds")
                    floor_batch4 += _floats(raw, "batch4_seconds")
                blocks.append(one.run(block, passes=1, max_seconds=work.max_query_seconds))
            run = LatencyRun.merge(blocks)
            middle = server_metrics.scrape(url) if metrics else {}
            crowded = crowd.run(texts.queries, passes=1, max_seconds=work.max_query_seconds)
            if metrics:
                after = server_metrics.scrape(url)
                sequential_split.append(server_metrics.breakdown(before, middle, run))
                concurrent_split.append(server_metrics.breakdown(middle, after, crowded))
            if round_floor:
                floor_single += round_floor
                p50 = summarize(run.seconds)["p50_ms"] / summarize(round_floor)["p50_ms"]
                round_ratios.append(round(p50, 3))
            sequential.append(run)
            concurrent.append(crowded)
    result: dict[str, object] = {
        "http_roundtrip_ready": round_trips(url, "/api/ready", 200),
        "query_sequential": LatencyRun.merge(sequential).summary(),
        "query_concurrent": LatencyRun.merge(concurrent).summary(),
    }
    if floor is not None:
        result["query_floor"] = summarize(floor_single)
        result["query_floor_batch4"] = summarize(floor_batch4)
        result["query_p50_vs_floor_per_round"] = round_ratios
    if metrics:
        result["breakdown_sequential_ms"] = _averaged(sequential_split)
        result["breakdown_concurrent_ms"] = _averaged(concurrent_split)
    return result


def index_section(
    url: str,
    texts: Texts,
    work: Workload,
    floor: FloorWorker | None,
    server_pid: int | None = None,
) -> dict[str, object]:
    """Section 2: per round, the floor on a sample of the round's chunk, then the whole
    chunk over HTTP by concurrent bulk clients. On a machine so loaded that all rounds
    would not fit the phase's time, the last rounds are skipped (the JSON says so).
    With ``server_pid``, the CPU time the server and the floor spent is recorded too:
    passages per CPU-second do not depend on how much CPU other tenants left them."""
    batches = math.ceil(len(texts.passages) / work.index_rounds / work.batch_size)
    per_round = max(1, batches) * work.batch_size
    http_done = http_seconds = floor_done = floor_seconds = floor_run_seconds = 0.0
    http_cpu = floor_cpu = 0.0
    round_ratios: list[float] = []
    deadline = time.monotonic() + work.index_phase_seconds
    last_round = 0.0
    for start in range(0, len(texts.passages), per_round):
        if time.monotonic() + last_round > deadline:
            break
        round_started = time.monotonic()
        chunk = texts.passages[start : start + per_round]
        round_floor = 0.0
        if floor is not None:
            sample = chunk[: work.floor_passages_per_round]
            floor_cpu_before = cpu_seconds(floor.process.pid)
            raw = floor.measure("passages", sample, work.max_index_seconds)
            floor_cpu += cpu_seconds(floor.process.pid) - floor_cpu_before
            floor_done += float(str(raw["passages"]))
            floor_seconds += float(str(raw["seconds"]))
            floor_run_seconds += float(str(raw["run_seconds"]))
            round_floor = float(str(raw["passages"])) / float(str(raw["seconds"]))
        server_cpu_before = cpu_seconds(server_pid) if server_pid else 0.0
        with bulk_load(
            url,
            chunk,
            batch_size=work.batch_size,
            clients=work.bulk_clients,
            max_batches=math.ceil(len(chunk) / work.batch_size),
            max_seconds=work.max_index_seconds,
        ) as bulk:
            outcome = bulk.result(timeout=work.max_index_seconds + 30)
        if server_pid:
            http_cpu += cpu_seconds(server_pid) - server_cpu_before
        http_done += float(str(outcome["passages"]))
        http_seconds += float(str(outcome["seconds"]))
        if round_floor:
            round_ratios.append(float(str(outcome["per_second"])) / round_floor)
        last_round = time.monotonic() - round_started
    result: dict[str, object] = {
        "index_http": {
            "rounds_run": math.ceil(http_done / per_round),
            "rounds_planned": math.ceil(len(texts.passages) / per_round),
            "passages": http_done,
            "seconds": http_seconds,
            "per_second": http_done / http_seconds,
        }
    }
    if floor is not None:
        result["index_floor"] = {
            "passages": floor_done,
            "seconds": floor_seconds,
            "per_second": floor_done / floor_seconds,
            "run_only_per_second": floor_done / floor_run_seconds,
        }
        result["index_vs_floor_per_round"] = [round(r, 3) for r in round_ratios]
    if server_pid and floor is not None and http_cpu and floor_cpu:
        per_cpu_second = {
            "server_passages_per_cpu_second": http_done / http_cpu,
            "floor_passages_per_cpu_second": floor_done / floor_cpu,
        }
        per_cpu_second["server_vs_floor"] = (
            per_cpu_second["server_passages_per_cpu_second"]
            / per_cpu_second["floor_passages_per_cpu_second"]
        )
        result["index_per_cpu_second"] = per_cpu_second
    return result


def saturation_section(
    query_url: str, index_url: str, texts: Texts, work: Workload
) -> dict[str, object]:
    """Section 3: sequential queries idle, then while bulk clients keep the indexing server
    busy, then idle again (idle = both idle runs, so drift in the noise averages out)."""

    def measure(passes: int) -> LatencyRun:
        return query_latencies(
            query_url,
            texts.queries,
            passes=passes,
            concurrency=1,
            max_seconds=work.max_query_seconds,
        )

    idle_before = measure(1)
    window = work.settle_seconds + work.max_query_seconds
    with bulk_load(
        index_url,
        texts.passages,
        batch_size=work.batch_size,
        clients=work.bulk_clients,
        max_batches=10**6,
        max_seconds=window + 30,
    ) as bulk:
        bulk.wait_started()
        time.sleep(work.settle_seconds)
        saturated = measure(work.saturated_passes)
        bulk.stop.set()
        during = bulk.result(timeout=window + 90)
    idle_after = measure(1)
    return {
        "query_idle": LatencyRun.merge([idle_before, idle_after]).summary(),
        "query_saturated": saturated.summary(),
        "bulk_during_saturation": during,
    }
