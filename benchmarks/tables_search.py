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


def search_before_after(result: dict[str, Any]) -> str:
    """Two API versions on one stack (benchmarks/search_before_after.py), every round."""
    rows = [
        "| round | version | sequential p50 / p99 | 4 clients queries/s | CPU ms per query: "
        "API / PostgreSQL / inference / clients |",
        "|---:|---|---|---:|---|",
    ]
    for number, measured in enumerate(result["rounds"], 1):
        for name in measured["order"]:
            m = measured["versions"][name]
            seq, con = m["sequential_ms"], m["concurrent"]
            cpu = con["cpu_ms_per_query"]
            parts = " / ".join(f"{cpu[p]:.1f}" for p in ("api", "postgres", "inference"))
            rows.append(
                f"| {number} | {name} | {seq['p50']:.1f} / {seq['p99']:.1f} ms | "
                f"{con['queries_per_second']:.1f} | {parts} / {cpu['clients']:.1f} |"
            )
    ratios, medians = result["ratios_current_to_baseline"], result["medians"]
    cpu = {
        part: medians["current"]["cpu_ms_per_query"][part]
        / medians["baseline"]["cpu_ms_per_query"][part]
        for part in ("api", "postgres")
    }
    machine = result["machine"]
    return (
        "\n".join(rows)
        + f"\n\n{result['mode']} at {result['chunks']:,} chunks; baseline: {result['baseline']}."
        f" Current over baseline, medians of the rounds: sequential p50"
        f" {ratios['sequential_p50_ms']:.2f}x, p99 {ratios['sequential_p99_ms']:.2f}x,"
        f" 4-client queries/s {ratios['queries_per_second']:.2f}x; CPU per query API"
        f" {cpu['api']:.2f}x, PostgreSQL {cpu['postgres']:.2f}x (run"
        f" {machine['finished_at'][:10]}, load {machine['load_average_1_5_15'][0]:.1f})\n"
    )
