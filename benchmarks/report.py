"""Ratios, targets and the results table for the model-server benchmark."""

from __future__ import annotations

import datetime
import os
import platform
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks.load import summarize
from tandem import cpu

__all__ = ["assemble", "machine_info", "markdown_table", "spread", "summarize"]

QUERY_VS_FLOOR_MAX = 1.3
INDEX_VS_FLOOR_MIN = 0.9
SATURATED_VS_IDLE_MAX = 1.5
VS_BASELINE_MIN = 3.0
FLOOR_AGREES = (0.8, 1.4)  # floor p50 / server forward-pass mean, when both ran alike


def spread(values: list[int]) -> dict[str, float]:
    return {"min": min(values), "mean": sum(values) / len(values), "max": max(values)}


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, object]:
    model_name = None
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model_name = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "affinity": cpu.format_cpu_list(cpu.affinity()),
        "usable_threads": cpu.usable_threads(),
        "cpu_model": model_name,
        "load_average_at_end": os.getloadavg(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "onnxruntime": _version("onnxruntime"),
        "torch": _version("torch"),
        "sentence_transformers": _version("sentence-transformers"),
        "fastapi": _version("fastapi"),
        "uvicorn": _version("uvicorn"),
        "httpx": _version("httpx"),
    }


def _get(section: Mapping[str, Any], *path: str) -> float:
    value: Any = section
    for key in path:
        value = value[key]
    return float(value)


def _target(value: float, limit: float, *, at_most: bool) -> dict[str, object]:
    met = value <= limit if at_most else value >= limit
    return {"value": round(value, 3), "limit": f"{'<=' if at_most else '>='} {limit}", "met": met}


def _vs_baseline(tandem: float, baseline: float, *, lower_is_better: bool) -> dict[str, object]:
    """How many times better Tandem is; the 3x target applies where the baseline is slower."""
    factor = baseline / tandem if lower_is_better else tandem / baseline
    target = _target(factor, VS_BASELINE_MIN, at_most=False)
    target["applies"] = factor > 1.0
    if factor <= 1.0:
        target["note"] = "the baseline is faster here; Tandem does not beat it"
    return target


def assemble(
    *,
    machine: dict[str, object],
    workload: dict[str, object],
    tandem: dict[str, Any],
    baseline: dict[str, Any] | None,
    phases: dict[str, dict[str, object]],
    elapsed_seconds: float,
) -> dict[str, object]:
    p50 = ("query_sequential", "p50_ms")
    ratios: dict[str, float] = {
        "query_p50_vs_floor": _get(tandem, *p50) / _get(tandem, "query_floor", "p50_ms"),
        "query_p99_vs_floor_p99": _get(tandem, "query_sequential", "p99_ms")
        / _get(tandem, "query_floor", "p99_ms"),
        "query_concurrent_p50_vs_floor_batch4_p50": _get(tandem, "query_concurrent", "p50_ms")
        / _get(tandem, "query_floor_batch4", "p50_ms"),
        "index_vs_floor": _get(tandem, "index_http", "per_second")
        / _get(tandem, "index_floor", "per_second"),
        "saturated_p99_vs_idle_p99": _get(tandem, "query_saturated", "p99_ms")
        / _get(tandem, "query_idle", "p99_ms"),
        "saturated_p50_vs_idle_p50": _get(tandem, "query_saturated", "p50_ms")
        / _get(tandem, "query_idle", "p50_ms"),
    }
    # The floor and the server's own forward passes should take about as long (the floor
    # adds tokenizing and normalizing); if not, other tenants slowed one of the two.
    forward = _get(tandem, "breakdown_sequential_ms", "forward_pass_mean_ms")
    ratios["floor_p50_vs_server_forward_mean"] = _get(tandem, "query_floor", "p50_ms") / forward
    ratios["query_p50_vs_server_forward_mean"] = _get(tandem, *p50) / forward
    query_target = _target(ratios["query_p50_vs_floor"], QUERY_VS_FLOOR_MAX, at_most=True)
    if not FLOOR_AGREES[0] <= ratios["floor_p50_vs_server_forward_mean"] <= FLOOR_AGREES[1]:
        query_target["note"] = (
            "the floor process and the server's forward passes ran at different speeds "
            "(CPU contention from other processes): this ratio is unreliable"
        )
    targets: dict[str, dict[str, object]] = {
        "query_p50_vs_floor": query_target,
        "index_vs_floor": _target(ratios["index_vs_floor"], INDEX_VS_FLOOR_MIN, at_most=False),
        "saturated_p99_vs_idle": _target(
            ratios["saturated_p99_vs_idle_p99"], SATURATED_VS_IDLE_MAX, at_most=True
        ),
    }
    if baseline is not None:
        ratios["baseline_saturated_p99_vs_idle_p99"] = _get(
            baseline, "query_saturated", "p99_ms"
        ) / _get(baseline, "query_idle", "p99_ms")
        ratios["baseline_query_p50_vs_tandem_floor"] = _get(baseline, *p50) / _get(
            tandem, "query_floor", "p50_ms"
        )
        targets["vs_baseline_query_p50"] = _vs_baseline(
            _get(tandem, *p50), _get(baseline, *p50), lower_is_better=True
        )
        targets["vs_baseline_index_throughput"] = _vs_baseline(
            _get(tandem, "index_http", "per_second"),
            _get(baseline, "index_http", "per_second"),
            lower_is_better=False,
        )
        targets["vs_baseline_saturated_p99"] = _vs_baseline(
            _get(tandem, "query_saturated", "p99_ms"),
            _get(baseline, "query_saturated", "p99_ms"),
            lower_is_better=True,
        )
    return {
        "timestamp": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "elapsed_seconds": round(elapsed_seconds, 1),
        "phases": phases,
        "machine": machine,
        "workload": workload,
        "tandem": tandem,
        "baseline": baseline,
        "ratios": {name: round(value, 3) for name, value in ratios.items()},
        "targets": targets,
    }


def _cell(section: Mapping[str, Any] | None, *path: str, digits: int = 1) -> str:
    if section is None:
        return "-"
    return f"{_get(section, *path):.{digits}f}"


def markdown_table(results: Mapping[str, Any]) -> str:
    tandem: Mapping[str, Any] = results["tandem"]
    baseline: Mapping[str, Any] | None = results["baseline"]
    rows = [
        ("query p50, sequential (ms)", "query_sequential", "p50_ms", "query_floor"),
        ("query p99, sequential (ms)", "query_sequential", "p99_ms", "query_floor"),
        ("query p50, 4 concurrent (ms)", "query_concurrent", "p50_ms", "query_floor_batch4"),
        ("query p99, 4 concurrent (ms)", "query_concurrent", "p99_ms", "query_floor_batch4"),
        ("queries/s, 4 concurrent", "query_concurrent", "per_second", None),
        ("indexing passages/s", "index_http", "per_second", "index_floor"),
        ("query p50, idle (ms)", "query_idle", "p50_ms", None),
        ("query p99, idle (ms)", "query_idle", "p99_ms", None),
        ("query p50, indexing saturated (ms)", "query_saturated", "p50_ms", None),
        ("query p99, indexing saturated (ms)", "query_saturated", "p99_ms", None),
        ("GET /api/ready round trip p50 (ms)", "http_roundtrip_ready", "p50_ms", None),
    ]
    lines = [
        "| measurement | Tandem | in-process floor | baseline |",
        "|---|---:|---:|---:|",
    ]
    for label, section, key, floor in rows:
        floor_cell = _cell(tandem[floor], key, digits=2) if floor else "-"
        if floor == "query_floor_batch4":
            floor_cell += " (batch of 4)"
        tandem_cell = _cell(tandem[section], key, digits=2)
        baseline_cell = _cell(baseline[section] if baseline else None, key, digits=2)
        lines.append(f"| {label} | {tandem_cell} | {floor_cell} | {baseline_cell} |")
    lines += ["", "| target | value | limit | met |", "|---|---:|---:|:---:|"]
    for name, target in results["targets"].items():
        met = "yes" if target["met"] else "**no**"
        lines.append(f"| {name} | {target['value']} | {target['limit']} | {met} |")
    return "\n".join(lines)
