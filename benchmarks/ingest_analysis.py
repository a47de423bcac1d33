"""Where the pipeline's time went: the instrumented worker's item records, the indexing
server's Prometheus counters and the CPU each process used."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from benchmarks.ingest_worker import PHASES
from benchmarks.tandem_stack import metric_growth

Interval = tuple[float, float]


def read_items(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def covered_seconds(intervals: Iterable[Interval], start: float, end: float) -> float:
    """Length of the union of `intervals`, clipped to [start, end]."""
    total, reach = 0.0, start
    for low, high in sorted(intervals):
        low, high = max(low, reach), min(high, end)
        if high > low:
            total += high - low
            reach = high
    return total


def phase_summary(items: list[dict[str, Any]], start: float, end: float) -> dict[str, Any]:
    """Seconds per phase (summed over items and as a share of item time), how many items
    were in flight on average, and how much of the wall time had an embedding request open
    (the rest, the indexing server had nothing from this worker)."""
    if not items:
        return {}
    wall = end - start
    item_seconds = sum(i["end"] - i["start"] for i in items)
    phases = {p: sum(i["phases"].get(p, 0.0) for i in items) for p in PHASES}
    phases["other"] = item_seconds - sum(phases.values())  # catalog upsert, chunk count
    embeds = [tuple(interval) for i in items for interval in i["embed_intervals"]]
    first_start = min(i["start"] for i in items)
    return {
        "items": len(items),
        "mean_item_ms": item_seconds / len(items) * 1000,
        "mean_items_in_flight": item_seconds / wall,
        "phase_ms_per_item": {p: s / len(items) * 1000 for p, s in phases.items()},
        "phase_share_of_item_time": {p: s / item_seconds for p, s in phases.items()},
        "embed_request_open_share": covered_seconds(embeds, start, end) / wall,
        "seconds_before_first_item": first_start - start,
        "seconds_after_last_item": end - max(i["end"] for i in items),
    }


def server_summary(
    before: dict[str, float], after: dict[str, float], wall: float
) -> dict[str, Any]:
    """The indexing server's forward passes during a run of `wall` seconds."""
    batches = metric_growth(before, after, "tandem_inference_seconds_count")
    forward = metric_growth(before, after, "tandem_inference_seconds_sum")
    items = metric_growth(before, after, "tandem_batch_size_sum")
    tokens = metric_growth(before, after, "tandem_batch_tokens_sum")
    requests = metric_growth(before, after, "tandem_request_seconds_count")
    if not batches:
        return {}
    return {
        "requests": requests,
        "batches": batches,
        "mean_batch_items": items / batches,
        "mean_padded_tokens_per_batch": tokens / batches,
        "forward_seconds": forward,
        "forward_busy_share": forward / wall,
        "forward_ms_per_item": forward / items * 1000 if items else 0.0,
    }


def cpu_summary(before: dict[str, float], after: dict[str, float], wall: float) -> dict[str, Any]:
    """CPU seconds and cores used per process over the run."""
    return {
        name: {
            "cpu_seconds": after[name] - before[name],
            "cores": (after[name] - before[name]) / wall,
        }
        for name in after
        if name in before
    }
