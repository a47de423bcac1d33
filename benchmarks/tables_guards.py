"""Renderers of benchmarks/tables.py for precision and the API's bounds: int8 against
fp32, the bounded load burst, and bodies refused without a key."""

from __future__ import annotations

from typing import Any

import orjson

from benchmarks.results_io import RESULTS_DIR


def _load(result: dict[str, Any]) -> str:
    return f"load average {result['machine']['load_average_1_5_15'][0]:.1f}"


def precision_quality(result: dict[str, Any]) -> str:
    rows = [
        "| set | documents / chunks / queries | fp32 MRR@10 | int8 MRR@10 | int8 - fp32 | "
        "int8 docs, fp32 queries | fp32 docs, int8 queries | recall@10 fp32 / int8 |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, s in result["sets"].items():
        r = s["results"]
        sample = " (sample)" if s["queries"] < s["full_set"]["queries"] else ""
        rows.append(
            f"| {name}{sample} | {s['documents']:,} / {s['chunks']:,} / {s['queries']:,} | "
            f"{r['fp32']['mrr_at_10']:.4f} | {r['int8']['mrr_at_10']:.4f} | "
            f"{r['int8']['mrr_at_10'] - r['fp32']['mrr_at_10']:+.4f} | "
            f"{r['int8_documents_fp32_queries']['mrr_at_10']:.4f} | "
            f"{r['fp32_documents_int8_queries']['mrr_at_10']:.4f} | "
            f"{r['fp32']['recall_at_10']:.3f} / {r['int8']['recall_at_10']:.3f} |"
        )
    verdict = "within" if result["int8_within_threshold_on_every_set"] else "not within"
    return (
        "\n".join(rows) + f"\n\nint8 is {verdict} {result['threshold_mrr_at_10']} MRR@10 of "
        f"fp32 on every set; default: {result['default_precision']} (one run, "
        f"{result['machine']['finished_at'][:10]}, {_load(result)})\n"
    )


def load_burst(result: dict[str, Any]) -> str:
    inference, search = result["inference"], result["api_search"]
    admitted, alone = inference["latency_ms_admitted"], inference["latency_ms_one_at_a_time"]
    idle, burst = search["idle"], search["under_burst"]
    statuses = ", ".join(f"{n:,} x {code}" for code, n in burst["statuses"].items())
    rows = [
        "| measurement | value |",
        "|---|---:|",
        f"| embed requests ({inference['waves']} waves x {inference['requests_per_wave']} "
        f"requests x {inference['items_per_request']} items) | {inference['requests']:,} |",
        f"| answered 429 (`Retry-After`: {', '.join(inference['retry_after_values'])}) | "
        f"{inference['share_429']:.1%} |",
        f"| 5xx / timeouts | {inference['server_errors']} / "
        f"{inference['requests'] - sum(inference['statuses'].values())} |",
        f"| admitted requests p50 / p99 | {admitted['p50']:,.0f} / {admitted['p99']:,.0f} ms |",
        f"| the same request sent alone p50 / p99 | {alone['p50']:,.0f} / {alone['p99']:,.0f} ms |",
        f"| inference server RSS before → peak | {inference['rss_before_mb']:.1f} → "
        f"{inference['rss_peak_mb']:.1f} MB |",
        f"| API searches under the burst: statuses | {statuses} |",
        f"| of which flagged `degraded` (keyword-only) | {burst['degraded_share']:.1%} |",
        f"| API search p50 / p99, alone | {idle['latency_ms_200']['p50']:,.0f} / "
        f"{idle['latency_ms_200']['p99']:,.0f} ms |",
        f"| API search p50 / p99, under the burst | {burst['latency_ms_200']['p50']:,.0f} / "
        f"{burst['latency_ms_200']['p99']:,.0f} ms |",
    ]
    return (
        "\n".join(rows) + f"\n\n(one run, {result['machine']['finished_at'][:10]}, "
        f"{_load(result)})\n"
    )


def _refusal(r: dict[str, Any]) -> str:
    took = r["seconds"]
    when = f"in {took * 1000:.1f} ms" if took < 1 else f"after {took:.1f} s"
    return f"{r['status']} {when}, RSS +{r['rss_growth_mb']:,.1f} MB"


def unauthenticated_body(result: dict[str, Any]) -> str:
    before = orjson.loads((RESULTS_DIR / "unauthenticated_body_before.json").read_bytes())
    size = result["body_bytes"] / 2**20
    old = before["payload_bytes"] / 2**20
    rows = [
        f"| API | route, body length | this version ({size:.0f} MiB) | before ({old:.0f} MiB) |",
        "|---|---|---|---|",
    ]
    for access, routes in result["results"].items():
        for route, r in routes.items():
            earlier = before["results"][access].get(route)
            rows.append(
                f"| {access.replace('_', ' ')} | `{route.split()[0]}` {route.split()[1]} | "
                f"{_refusal(r)} | {_refusal(earlier) if earlier else '-'} |"
            )
    return (
        "\n".join(rows) + f"\n\n(one run each, {result['machine']['finished_at'][:10]}; "
        f"{_load(result)} and {_load(before)})\n"
    )
