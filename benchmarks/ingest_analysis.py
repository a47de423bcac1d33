"""Where the pipeline's time went: the indexing server's Prometheus counters and the CPU
each process used (the worker's own stage timings: benchmarks/ingest_worker.py)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from benchmarks.tandem_stack import metric_growth

Interval = tuple[float, float]


def covered_seconds(intervals: Iterable[Interval], start: float, end: float) -> float:
    """Length of the union of `intervals`, clipped to [start, end]."""
    total, reach = 0.0, start
    for low, high in sorted(intervals):
        low, high = max(low, reach), min(high, end)
        if high > low:
            total += high - low
            reach = high
    return total


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
