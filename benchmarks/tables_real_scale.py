"""Renderer of benchmarks/tables.py for search on real text at 16k-1M chunks
(benchmarks/real_scale_run.py), each size against the issue's targets."""

from __future__ import annotations

from typing import Any

MODES = ("keyword", "semantic", "hybrid")


def _target(n: int, result: dict[str, Any]) -> tuple[float, float] | None:
    for target in (result["targets"]["sequential_small"], result["targets"]["sequential_1m"]):
        if n in target["sizes"]:
            return float(target["p50_ms"]), float(target["p99_ms"])
    return None


def _met(ok: bool) -> str:
    return "met" if ok else "**missed**"


def real_scale(result: dict[str, Any]) -> str:
    rows = [
        "| chunks (real / borrowed vectors) | mode | sequential p50 / p99 | target | "
        "4 clients queries/s, p50 / p99 | MRR@10 held-out (queries) | HNSW recall@10 | "
        "load before → after |",
        "|---|---|---|---|---|---:|---:|---|",
    ]
    notes: list[str] = []
    for key, size in sorted(result["sizes"].items(), key=lambda item: int(item[0])):
        n = int(key)
        target = _target(n, result)
        for mode in MODES:
            s, c = size["modes"][mode]["sequential"], size["modes"][mode]["concurrent"]
            seq = s["client_ms"]
            verdict = ""
            if target:
                ok = seq["p50"] <= target[0] and seq["p99"] <= target[1]
                verdict = f"≤ {target[0]:.0f} / {target[1]:.0f} ms: {_met(ok)}"
            recall = f"{size['hnsw_recall_at_10']:.3f}" if mode != "keyword" else ""
            rows.append(
                f"| {size['chunks']:,} ({size['real_vectors']:,} / "
                f"{size['borrowed_vectors']:,}) | {mode} | {seq['p50']:.1f} / {seq['p99']:.1f} ms"
                f" | {verdict} | {c['queries_per_second']:.0f}, {c['client_ms']['p50']:.1f} / "
                f"{c['client_ms']['p99']:.1f} ms | {s['mrr_at_10']:.3f} ({s['mrr_queries']}) | "
                f"{recall} | "
                f"{size['load_average_before'][0]:.1f} → {size['load_average_after'][0]:.1f} |"
            )
        if n == 100_000:
            qps = size["modes"]["hybrid"]["concurrent"]["queries_per_second"]
            goal = result["targets"]["hybrid_4_clients_100k_qps"]
            notes.append(
                f"hybrid with 4 clients at 100k: {qps:.0f} queries/s "
                f"(target ≥ {goal:.0f}: {_met(qps >= goal)})"
            )
    corpus = result["corpus"]
    kinds = ", ".join(f"{v:,} {k}" for k, v in corpus["documents_by_kind"].items())
    machine = result["machine"]
    notes.append(
        f"corpus: {corpus['documents']:,} documents ({kinds}); {result['queries']['held_out']} "
        f"held-out known-item queries per mode; run {machine['finished_at'][:10]}"
    )
    notes.append(_warm_up(result["sizes"]))
    return "\n".join(rows) + "\n\n" + "; ".join(notes) + "\n"


def _warm_up(sizes: dict[str, Any]) -> str:
    """How each size was warmed before it was measured. Sizes from before the full warm
    pass (no `warm_queries`) ran 10 tuning queries before each mode, in an earlier run
    than the file's date when a later run kept them (`--keep`)."""
    by_count: dict[int, list[int]] = {}
    for n in sorted(int(k) for k, v in sizes.items() if "warm_queries" in v):
        by_count.setdefault(sizes[str(n)]["warm_queries"], []).append(n)
    cold = sorted(int(k) for k, v in sizes.items() if "warm_queries" not in v)
    parts = [
        ", ".join(f"{n:,}" for n in listed) + f": {q:,} tuning queries first (each once in "
        "each mode)"
        for q, listed in sorted(by_count.items())
    ]
    if cold:
        listed = ", ".join(f"{n:,}" for n in cold)
        earlier = " (an earlier run)" if by_count else ""
        parts.append(f"{listed}: 10 tuning queries before each mode{earlier}")
    return "warm-up: " + "; ".join(parts)


STAGES = ("embed", "connect", "bm25", "hnsw", "cosines", "fusion", "page", "snippets")


def real_scale_stages(result: dict[str, Any]) -> str:
    """Where the server's time goes per size and mode: each stage's mean over the held-out
    queries (from Server-Timing; hybrid runs BM25 beside the embedding and HNSW, so its
    stages add up to more than its total)."""
    rows = [
        "| chunks | mode | client p50 | server total p50 | "
        + " | ".join(STAGES)
        + " | rest of the client's time |",
        "|---|---|---:|---:|" + "---:|" * len(STAGES) + "---:|",
    ]
    for key, size in sorted(result["sizes"].items(), key=lambda item: int(item[0])):
        for mode in MODES:
            s = size["modes"][mode]["sequential"]
            stages = s["server_stages_ms"]
            cells = [f"{stages[name]['mean']:.1f}" if name in stages else "" for name in STAGES]
            client, total = s["client_ms"]["mean"], stages["total"]["mean"]
            head = f"| {int(key):,} | {mode} | {s['client_ms']['p50']:.1f} | "
            head += f"{stages['total']['p50']:.1f} | "
            rows.append(head + " | ".join(cells) + f" | {client - total:.1f} |")
    return (
        "\n".join(rows) + "\n\n(means in ms over the held-out queries, sequential; the last "
        "column is the client's mean minus the server's: HTTP, JSON parsing, the client)\n"
    )


CPU_PARTS = ("api", "postgres", "inference", "clients")


def real_scale_cpu(result: dict[str, Any]) -> str:
    """Where a 2-core machine's throughput goes: each part's CPU per query while 4 clients
    search (sizes measured before the parts were recorded are left out)."""
    cpus = int(result["machine"].get("cpus", 2))
    rows = [
        "| chunks | mode | 4 clients queries/s | "
        + " | ".join(f"{part} CPU ms" for part in CPU_PARTS)
        + f" | all | queries/s {cpus} CPUs allow at that cost |",
        "|---|---|---:|" + "---:|" * len(CPU_PARTS) + "---:|---:|",
    ]
    for key, size in sorted(result["sizes"].items(), key=lambda item: int(item[0])):
        for mode in MODES:
            concurrent = size["modes"][mode]["concurrent"]
            parts = concurrent.get("cpu_ms_per_query")
            if parts is None:
                continue
            total = sum(parts[p] for p in CPU_PARTS)
            rows.append(
                f"| {int(key):,} | {mode} | {concurrent['queries_per_second']:.0f} | "
                + " | ".join(f"{parts[p]:.1f}" for p in CPU_PARTS)
                + f" | {total:.1f} | {1000 * cpus / total:.0f} |"
            )
    return "\n".join(rows) + "\n"
