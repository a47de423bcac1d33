"""Renderer of benchmarks/tables.py for search latency on synthetic text
(benchmarks/search_latency.py), with the 300k-chunk run beside it when there is one."""

from __future__ import annotations

from typing import Any

import orjson

from benchmarks.results_io import RESULTS_DIR

MODES = ("keyword", "semantic", "hybrid")


def _sizes(result: dict[str, Any]) -> list[tuple[int, dict[str, Any], dict[str, Any]]]:
    runs = [result]
    larger = RESULTS_DIR / "search_latency_300k.json"
    if larger.exists():
        runs.append(orjson.loads(larger.read_bytes()))
    sized = [(int(n), size, run) for run in runs for n, size in run["sizes"].items()]
    return sorted(sized, key=lambda entry: entry[0])


def search_latency(result: dict[str, Any]) -> str:
    rows = [
        "| chunks | mode | sequential p50 / p99 | 4 clients p50 / p99 | 4 clients queries/s | "
        "HNSW recall@10 | run |",
        "|---:|---|---|---|---:|---:|---|",
    ]
    for n, size, run in _sizes(result):
        for mode in MODES:
            m = size["modes"][mode]
            seq, con = m["client_ms"], m["concurrent"]
            recall = f"{size['hnsw_recall_at_10']:.3f}" if mode != "keyword" else ""
            machine = run["machine"]
            rows.append(
                f"| {n:,} | {mode} | {seq['p50']:.1f} / {seq['p99']:.1f} ms | "
                f"{con['client_ms']['p50']:.1f} / {con['client_ms']['p99']:.1f} ms | "
                f"{con['queries_per_second']:.0f} | {recall} | {machine['finished_at'][:10]}, "
                f"load {machine['load_average_1_5_15'][0]:.1f} |"
            )
    return "\n".join(rows) + "\n"
