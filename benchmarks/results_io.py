"""Writing a benchmark's JSON result, with the conditions it ran under."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson

RESULTS_DIR = Path(__file__).parent / "results"


def summarize_ms(seconds: list[float]) -> dict[str, float]:
    """p50, p90, p99, mean and max of durations given in seconds, in milliseconds."""
    if not seconds:
        return {}
    values = np.asarray(seconds) * 1000
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {
        "p50": float(p50),
        "p90": float(p90),
        "p99": float(p99),
        "mean": float(values.mean()),
        "max": float(values.max()),
        "n": len(seconds),
    }


def machine() -> dict[str, Any]:
    """Enough to judge a number later: CPUs, and how busy the (shared) machine was."""
    return {
        "cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "load_average_1_5_15": list(os.getloadavg()),
        "python": platform.python_version(),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def write_result(name: str, result: dict[str, Any], path: Path | None = None) -> Path:
    """`result` plus machine facts, to `path` or benchmarks/results/<name>.json."""
    target = path or RESULTS_DIR / f"{name}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    body = result | {"machine": machine()}
    target.write_bytes(orjson.dumps(body, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    return target
