"""README tables generated from benchmarks/results/*.json, never typed.

A Markdown file holds a generated table between `<!-- table:NAME -->` and
`<!-- /table:NAME -->`; NAME is a renderer below, fed the result file of that name.

    python -m benchmarks.tables          # rewrite the tables in place
    python -m benchmarks.tables --check  # exit 1 when a table differs from its JSON
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from benchmarks.tables_guards import load_burst, precision_quality, unauthenticated_body
from benchmarks.tables_real_scale import real_scale, real_scale_cpu, real_scale_stages
from benchmarks.tables_search import search_before_after, search_latency

ROOT = Path(__file__).parent.parent
RESULTS = Path(__file__).parent / "results"
DOCUMENTS = (ROOT / "README.md", ROOT / "DEPLOYMENT.md", Path(__file__).parent / "README.md")
BLOCK = re.compile(
    r"(<!-- table:(?P<name>[a-z_0-9]+) -->\n)(?P<body>.*?)(<!-- /table:(?P=name) -->)", re.S
)


def _seconds(value: float) -> str:
    return f"{value:.1f} s" if value >= 1 else f"{value * 1000:.0f} ms"


def source_sync(result: dict[str, Any]) -> str:
    folder, edit, web = result["folder"], result["edit"], result["web"]
    first, second = folder["first_sync"], folder["second_sync"]
    wfirst, wsecond = web["first_sync"], web["second_sync"]
    load = result["machine"]["load_average_1_5_15"][0]
    rows = [
        "| | first sync | second sync | target |",
        "|---|---|---|---|",
        f"| folder of {folder['files']:,} real text files: passages embedded | "
        f"{first['embedded']:,} | **{second['embedded']}** | 0 |",
        f"| folder: time | {_seconds(first['seconds'])} | {_seconds(second['seconds'])} "
        f"(**{folder['second_over_first_time']:.2%}** of the first) | ≤ 10% |",
        f"| folder: added / updated / unchanged | {first['added']} / {first['updated']} / "
        f"{first['unchanged']} | {second['added']} / {second['updated']} / "
        f"{second['unchanged']} | |",
        f"| web site of {web['pages']:,} pages, {web['changed_pages']} changed before the "
        f"second: bodies fetched | all | **{wsecond['bodies_fetched']}** "
        f"({wsecond['not_modified']:,} answered 304) | the changed pages only |",
        f"| web: passages embedded | {wfirst['embedded']:,} | **{wsecond['embedded']}** | "
        "what changed |",
        f"| web: time | {_seconds(wfirst['seconds'])} | {_seconds(wsecond['seconds'])} | |",
        f"| one paragraph edited in a {edit['chunks_before']}-chunk document: chunks "
        f"re-embedded | | **{edit['re_embedded']}** of {edit['chunks_after']} | ≤ 3 |",
    ]
    return "\n".join(rows) + f"\n\n(one run, load average {load:.1f})\n"


def access_latency(result: dict[str, Any]) -> str:
    corpus, recall = result["corpus"], result["hnsw_recall_at_10"]
    share = corpus["restricted_chunks"] / corpus["chunks"]
    rows = [
        f"| {corpus['chunks']:,} chunks, a user reading {share:.1%} | admin p50 / p99 | "
        "restricted p50 / p99 | ratio of p50 (target ≤ 1.5) |",
        "|---|---|---|---|",
    ]
    for mode, m in result["modes"].items():
        admin, restricted = m["admin_ms"], m["restricted_ms"]
        rows.append(
            f"| {mode} | {admin['p50']:.1f} / {admin['p99']:.1f} ms | "
            f"{restricted['p50']:.1f} / {restricted['p99']:.1f} ms | **{m['p50_ratio']:.2f}x** |"
        )
    load = result["machine"]["load_average_1_5_15"][0]
    return (
        "\n".join(rows)
        + f"\n\nHNSW recall@10 against exact search: unfiltered {recall['unfiltered']:.3f}, "
        f"under the 1% filter {recall['restricted']:.3f} "
        f"(**{recall['restricted_over_unfiltered']:.2f}x**, target ≥ 0.9). In-process, "
        f"paired query by query; one run, load average {load:.1f}.\n"
    )


def search_breakdown(result: dict[str, Any]) -> str:
    variants = result["variants"]
    rows = [
        f"| {result['chunks']:,} chunks, through the API | before p50 / p99 | after p50 / p99 "
        "| after / before (p50) |",
        "|---|---|---|---|",
    ]
    for name, m in variants.items():
        before, after = m["before"]["client_ms"], m["after"]["client_ms"]
        rows.append(
            f"| {name} | {before['p50']:.1f} / {before['p99']:.1f} ms | "
            f"{after['p50']:.1f} / {after['p99']:.1f} ms | **{m['p50_after_over_before']:.2f}x** |"
        )
    rates = {
        side: sum(r["queries_per_second"] for r in rounds) / len(rounds)
        for side, rounds in result["hybrid_concurrent"].items()
    }
    rows.append(
        f"| hybrid, {result['concurrent_clients']} clients at once | "
        f"{rates['before']:.1f} queries/s | {rates['after']:.1f} queries/s | "
        f"**{rates['after'] / rates['before']:.2f}x** |"
    )
    stages = [
        s
        for s in STAGE_ORDER
        if any(s in m[side]["stages_ms"] for m in variants.values() for side in ("before", "after"))
    ]
    rows += ["", "| mean ms per query, before → after | " + " | ".join(variants) + " |"]
    rows.append("|---|" + "---|" * len(variants))
    for stage in stages:
        cells = []
        for m in variants.values():
            pair = [m[side]["stages_ms"].get(stage, {}).get("mean") for side in ("before", "after")]
            cells.append(" → ".join("-" if v is None else f"{v:.2f}" for v in pair))
        rows.append(f"| {stage} | " + " | ".join(cells) + " |")
    load = result["machine"]["load_average_1_5_15"][0]
    return (
        "\n".join(rows) + f"\n\nOne run, each query on both servers in turn (order alternating), "
        f"{result['queries_per_variant']} queries per row; stages from the Server-Timing "
        "header (hybrid's run at once on two threads, so they add up to more than the "
        f"total); load average {load:.1f} at the end.\n"
    )


# Server-Timing's order (tandem.index.stage_timings.Stage), then the route's total.
STAGE_ORDER = (
    "embed",
    "connect",
    "bm25",
    "hnsw",
    "cosines",
    "fusion",
    "page",
    "rerank",
    "snippets",
    "serialize",
    "total",
)
_PROCESSES = {
    "api": "API (uploads, and the benchmark's progress polls)",
    "api_upload_cpu": "API, the uploads alone",
    "worker": "worker, its own threads",
    "worker_parser_children": "worker's parser children (sandbox)",
    "postgres_backends": "PostgreSQL client backends (statements, BM25 triggers, HNSW)",
    "bm25_trigger": "PostgreSQL: of that, in the BM25 trigger (wall ms)",
    "postgres_background": "PostgreSQL background (WAL writer, checkpointer, vacuum)",
    "indexing_server": "indexing model server (HTTP, tokenize, forward)",
    "inference_server": "inference model server (idle)",
}


def _cpu_rows(before: dict[str, float] | None, after: dict[str, float], names: Any) -> list[str]:
    rows = []
    for key, label in names:
        if key not in after:
            continue
        new = after[key]
        if before is None:
            rows.append(f"| {label} | {new:.2f} |")
            continue
        old = before.get(key, 0.0)
        ratio = f"{new / old:.2f}x" if old > 0.005 else "—"
        rows.append(f"| {label} | {old:.2f} | {new:.2f} | {ratio} |")
    return rows


def ingest_throughput(result: dict[str, Any]) -> str:
    """Ratios to the floor per profile and variant, then each profile's CPU per document by
    process and by worker stage, before and after."""
    rows = [
        "| profile | code | documents/s | in-process floor, documents/s | ratio | target |",
        "|---|---|---:|---:|---:|---|",
    ]
    for profile, outcome in result["profiles"].items():
        target = outcome["rounds"][0]["target_ratio"]
        for variant, summary in sorted(outcome["summary"].items(), reverse=True):
            met = "met" if summary["ratio"] >= target else "missed"
            rows.append(
                f"| {profile} | {variant} | {summary['documents_per_second']:.1f} | "
                f"{summary['floor_documents_per_second']:.1f} | **{summary['ratio']:.2f}** | "
                f"≥ {target} ({met}) |"
            )
    loads = [r["load_average_1"] for o in result["profiles"].values() for r in o["rounds"]]
    text = "\n".join(rows) + (
        f"\n\n({len(loads)} rounds, before and after alternating; load average "
        f"{min(loads):.1f} to {max(loads):.1f})\n"
    )
    for profile, outcome in result["profiles"].items():
        summary = outcome["summary"]
        before, after = summary.get("before"), summary["after"]
        header = "| CPU ms per document | before | after | after / before |"
        rule = "|---|---:|---:|---:|"
        if before is None:
            header, rule = "| CPU ms per document | ms |", "|---|---:|"
        stages = after["worker_stage_cpu_ms_per_document"]
        text += "\n".join(
            [
                f"\n**{profile}** documents: CPU per document by process and by worker stage\n",
                header,
                rule,
                *_cpu_rows(
                    before and before["process_cpu_ms_per_document"],
                    after["process_cpu_ms_per_document"],
                    _PROCESSES.items(),
                ),
                *_cpu_rows(
                    before and before["worker_stage_cpu_ms_per_document"],
                    stages,
                    [(s, f"worker stage: {s}") for s in stages],
                ),
            ]
        )
        text += "\n"
    return text


def _short(name: str) -> str:
    """A configuration's name without its side's prefix: "linear-max-0.7", "rrf-k60-w0.5"."""
    return name.removeprefix("reference-").removeprefix("hybrid-")


def _target_cell(found: dict[str, Any], half: str, ratio: bool) -> str:
    figure = found[half]
    if ratio:
        text = f"{figure['value']:.3f}x [{figure['ci95_low']:.2f}, {figure['ci95_high']:.2f}]"
    else:
        text = f"{figure['value']:+.3f} [{figure['ci95_low']:+.3f}, {figure['ci95_high']:+.3f}]"
    if half == "tuning":
        return text
    if not found["met_on_held_out"]:
        return f"**{text}** missed"
    sure = found["ci95_above_goal_on_held_out"]
    return f"**{text}** met{'' if sure else ', interval reaches below'}"


def ranking_quality(result: dict[str, Any]) -> str:
    sets = result["sets"]
    halves = ("tuning", "held_out")
    header = ["MRR@10 (recall@10)"]
    for name, found in sets.items():
        header += [f"{name} {h.replace('_', '-')} ({found['split'][h]})" for h in halves]
    rows = ["| " + " | ".join([*header, "target, on held-out"]) + " |"]
    rows.append("|---" + "|---:" * (len(header) - 1) + "|---|")

    def figures(label: str, pick: Callable[[dict[str, Any]], str], target: str = "") -> None:
        cells = []
        for found in sets.values():
            name = pick(found)
            for half in halves:
                row = found["results"].get(name) or found["summary"]["reference_fusion"]["halves"]
                cell = f"{row[half]['mrr_at_10']:.3f} ({row[half]['recall_at_10']:.3f})"
                cells.append(cell if "{" not in label else f"{cell} {_short(name)}")
        rows.append(f"| {label.replace('{}', '')} | " + " | ".join([*cells, target]) + " |")

    def target(label: str, key: str, ratio: bool, goal: str) -> None:
        cells = [
            _target_cell(found["summary"]["targets"][key], half, ratio)
            for found in sets.values()
            for half in halves
        ]
        rows.append(f"| {label} | " + " | ".join([*cells, goal]) + " |")

    def chosen(side: str) -> Callable[[dict[str, Any]], str]:
        return lambda found: str(found["summary"][side]["chosen_on_tuning"])

    figures("Tandem keyword (BM25 in PostgreSQL)", lambda _: "keyword")
    figures("reference BM25 (bm25s, whole documents)", lambda _: "reference-bm25")
    target("keyword / reference BM25", "keyword / reference BM25", True, "≥ 0.97x")
    figures("Tandem semantic", lambda _: "semantic")
    figures("reference dense (exact cosine)", lambda _: "reference-dense")
    target("semantic / reference dense", "semantic / reference dense", True, "≥ 0.99x")
    figures("Tandem hybrid, defaults (linear, alpha 0.7)", lambda f: "hybrid-linear-0.7")
    figures("Tandem hybrid chosen on tuning{}", chosen("tandem_hybrid"))
    figures("best reference fusion chosen on tuning{}", chosen("reference_fusion"))
    target(
        "hybrid (defaults) - best reference fusion",
        "default hybrid - best reference fusion",
        False,
        "≥ +0.01",
    )
    target(
        "hybrid chosen on tuning - best reference fusion",
        "tuned hybrid - best reference fusion",
        False,
        "(comparison)",
    )
    details = []
    for name, found in sets.items():
        sample = f"{found['documents']:,} documents, {found['chunks']:,} chunks"
        details.append(f"{name}: {sample}, {found['queries']:,} queries")
    load = result["machine"]["load_average_1_5_15"][0]
    return (
        "\n".join(rows)
        + f"\n\n{'; '.join(details)}; vectors from the {result['precision']} model. "
        f"Split: {result['split_rule']}. In brackets: 95% paired bootstrap interval over "
        f"the half's queries. One run, load average {load:.1f}.\n"
    )


def ranking_configurations(result: dict[str, Any]) -> str:
    """Every configuration's MRR@10 on both halves: where a choice overfits, the tuning
    figure runs ahead of the held-out one."""
    sets = result["sets"]
    header = ["MRR@10"] + [f"{n} {h}" for n in sets for h in ("tuning", "held-out")]
    rows = ["| " + " | ".join(header) + " |", "|---" + "|---:" * (len(header) - 1) + "|"]
    names = list(next(iter(sets.values()))["results"])
    for name in names:
        cells = []
        for found in sets.values():
            row = found["results"].get(name)
            cells += (
                [f"{row[h]['mrr_at_10']:.3f}" for h in ("tuning", "held_out")] if row else ["", ""]
            )
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def replica_lag(result: dict[str, Any]) -> str:
    ingest, failover, idle = result["ingest"], result["failover"], result["idle"]
    lag = ingest["replay_lag_ms"]
    ryw = ingest["read_your_writes"]
    two_hosts = result["setup"].startswith("two hosts")
    heading = "on two simulated hosts (one core each)" if two_hosts else "on one machine"
    rows = [
        f"| one primary + one standby {heading} | measured | target |",
        "|---|---|---|",
        f"| replay lag during ingest ({ingest['bulk_documents']:,} bulk documents and "
        f"{ryw['tries']:,} tries in {ingest['seconds']:.0f} s, "
        f"`pg_stat_replication.replay_lag`) p50 / p99 | {lag['p50']:.0f} / "
        f"**{lag['p99']:.0f} ms** | p99 ≤ 1 s |",
    ]
    after = result.get("idle_after_ingest")
    for mode, ratio in result["ratios"].items():
        primary, replica = idle[mode]["primary_ms"], idle[mode]["replica_ms"]
        during = ingest["search_ms"][mode]
        after_cells = ""
        if after is not None:
            after_cells = (
                f"; idle primary after ingest {after[mode]['primary_ms']['p50']:.1f} ms, "
                f"**{ratio['ingest_replica_over_idle_primary_after_p50']:.2f}x** that"
            )
        rows.append(
            f"| {mode} search p50: idle primary / idle standby / standby during ingest | "
            f"{primary['p50']:.1f} / {replica['p50']:.1f} / {during['p50']:.1f} ms "
            f"(**{ratio['idle_replica_over_idle_primary_p50']:.2f}x** idle, "
            f"**{ratio['ingest_replica_over_idle_primary_p50']:.2f}x** during ingest; "
            f"{during['p50'] / replica['p50']:.2f}x the idle standby{after_cells}) | ≤ 1.2x |"
        )
    if "search_ms_first_fifth" in ingest:
        for mode, ratio in result["ratios"].items():
            first = ingest["search_ms_first_fifth"][mode]["p50"]
            last = ingest["search_ms_last_fifth"][mode]["p50"]
            rows.append(
                f"| {mode} size for size: the standby's first / last fifth of searches during "
                "ingest against the idle primary before / after | "
                f"{first:.1f} / {last:.1f} ms "
                f"(**{ratio['ingest_start_replica_over_idle_primary_p50']:.2f}x** / "
                f"**{ratio['ingest_end_replica_over_idle_primary_after_p50']:.2f}x**) | ≤ 1.2x |"
            )
    if "standby_cpu" in ingest:
        cpu = ingest["standby_cpu"]
        rows.append(
            "| the standby's CPU during ingest: WAL replay (`startup` process) / the whole "
            f"server | {cpu['replay_cores']:.2f} / {cpu['standby_cores']:.2f} cores | |"
        )
    if "reads" in ingest:
        reads = ingest["reads"]
        served = sum(v for k, v in reads.items() if k.endswith("/served"))
        behind = sum(v for k, v in reads.items() if k.endswith("/behind"))
        on_primary = reads.get("primary/served", 0)
        rows.append(
            "| the standby's API server's reads during ingest: served / found behind the "
            "newest succeeded attempt (read again) / of those served, by the primary; "
            "transactions that waited for replay (their wait in all) | "
            f"{served:,.0f} / {behind:,.0f} / {on_primary:,.0f}; "
            f"{reads['catch_up_waits']:,.0f} ({_seconds(reads['catch_up_seconds'])}) | |"
        )
    if "idle_after_vacuum" in result:
        before, after, vacuumed = (
            result[k] for k in ("idle", "idle_after_ingest", "idle_after_vacuum")
        )
        dead = [result["tables"][k]["bm25_terms"]["dead"] for k in ("before", "after", "vacuumed")]
        for mode in ("keyword", "hybrid"):
            p50 = [r[mode]["primary_ms"]["p50"] for r in (before, after, vacuumed)]
            rows.append(
                f"| {mode} p50 on the idle primary: before ingest / after it / after VACUUM "
                "(dead row versions in `bm25_terms` then) | "
                + " / ".join(f"{v:.1f}" for v in p50)
                + " ms ("
                + " / ".join(f"{d:,}" for d in dead)
                + ") | |"
            )
    if "seed_documents" in result:
        rows.append(
            f"| index before / after ingest | {result['seed_documents']:,} seed documents / "
            f"{result['chunks_after']:,} chunks | |"
        )
    rows += [
        f"| searches failed during ingest | {ingest['failed_searches']} | 0 |",
        f"| documents missed by a search right after their attempt succeeded | "
        f"**{ryw['missed']} of {ryw['tries']:,}** | 0 of 1,000 |",
        f"| standby SIGKILLed and restarted: failed searches | **{failover['failed_searches']} "
        f"of {failover['searches']:,}** | 0 |",
        f"| standby healthy again after its restart | "
        f"{_seconds(failover['healthy_after_restart_seconds'])} | |",
    ]
    load = result["machine"]["load_average_1_5_15"][0]
    sharing = (
        "`--two-hosts`: the write side (primary, worker, indexing server, the primary's API "
        "server and its own inference server, upload clients) pinned to one core, the read "
        "side (standby, inference server, the replica's API server, the search client) to "
        "the other; the idle search client moves to the side it asks"
        if two_hosts
        else "the standby shares the machine's two cores with everything else"
    )
    return (
        "\n".join(rows) + f"\n\n(benchmarks/replica_lag.py; one run, load average {load:.1f}; "
        f"{sharing})\n"
    )


def shard_merge(result: dict[str, Any]) -> str:
    rows = [
        f"| {result['documents']:,} documents, {result['queries']:,} queries | "
        "BM25 MRR@10, shard-local statistics | BM25 MRR@10, global statistics | "
        "top-10 overlap with unsharded (local / global) |",
        "|---|---|---|---|",
        f"| unsharded | {result['bm25_unsharded_mrr_at_10']:.4f} | "
        f"{result['bm25_unsharded_mrr_at_10']:.4f} | 1.00 / 1.00 |",
    ]
    for k in result["bm25"].values():
        rows.append(
            f"| {k['shards']} shards | {k['mrr_at_10_local_stats']:.4f} | "
            f"{k['mrr_at_10_global_stats']:.4f} | {k['overlap_at_10_local_stats']:.2f} / "
            f"{k['overlap_at_10_global_stats']:.2f} |"
        )
    dense = result["dense"]
    single = dense["S1_k10"]
    rows += [
        "",
        "| dense, pgvector HNSW per shard | each shard returns k' | recall@10 vs exact | "
        "p50: slowest shard + merge (vs unsharded) |",
        "|---|---|---|---|",
        f"| unsharded | 10 | {single['recall_at_10']:.4f} | {single['p50_ms']:.2f} ms (1.00x) |",
    ]
    for d in dense.values():
        if d["shards"] > 1:
            rows.append(
                f"| {d['shards']} shards | {d['k_prime']} | {d['recall_at_10']:.4f} | "
                f"{d['p50_ms']:.2f} ms ({d['p50_ms'] / single['p50_ms']:.2f}x) |"
            )
    load = result["machine"]["load_average_1_5_15"][0]
    return "\n".join(rows) + f"\n\n(one run on one machine, load average {load:.1f})\n"


def query_isolation(result: dict[str, Any]) -> str:
    floor = result["floor"]
    limit = 1.3 * floor["query"]["p50_ms"] + 1.0
    rows = [
        "| variant | query p50 / p99 idle | with indexing saturated | p99 saturated ÷ idle "
        "(≤ 1.5) | indexing vs floor (≥ 0.9) | bulk passages/s while queried | indexing "
        "waited |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, v in result["variants"].items():
        idle, saturated = v["query_idle"], v["query_saturated"]
        rows.append(
            f"| {name} | {idle['p50_ms']:.2f} / {idle['p99_ms']:.2f} ms | "
            f"{saturated['p50_ms']:.2f} / {saturated['p99_ms']:.2f} ms | "
            f"**{v['saturated_p99_vs_idle_p99']:.2f}x** | **{v['index_vs_floor']:.2f}x** | "
            f"{v['bulk_per_second_while_queried']:.1f} | {v['indexing_yield_seconds']:.1f} s |"
        )
    start = result["load_average_at_start"][0]
    end = result["machine"]["load_average_1_5_15"][0]
    return (
        "\n".join(rows) + f"\n\nFloors in the same run: one query in-process on 1 thread p50 "
        f"{floor['query']['p50_ms']:.2f} ms (so the idle p50 target is ≤ {limit:.2f} ms), "
        f"the indexing role's requests of 64 in-process {floor['index_per_second']:.1f} "
        f"passages/s. {result['rounds']} alternating rounds of "
        f"{result['queries_per_measurement']} sequential queries per measurement; load "
        f"average {start:.1f} at the start, {end:.1f} at the end.\n"
    )


def model_server(result: dict[str, Any]) -> str:
    tandem, baseline, ratios = result["tandem"], result["baseline"], result["ratios"]
    targets = result["targets"]

    def verdict(name: str) -> str:
        target = targets[name]
        limit = target["limit"].replace("<=", "≤").replace(">=", "≥")
        return f"{limit} — {'met' if target['met'] else 'missed'}"

    floor, idle = tandem["query_floor"], tandem["query_sequential"]
    index, index_floor = tandem["index_http"], tandem["index_floor"]
    quiet, loaded = tandem["query_idle"], tandem["query_saturated"]
    rows = [
        "| | Tandem | floor / baseline | ratio | target |",
        "|---|---:|---:|---:|---|",
        f"| query p50, sequential | {idle['p50_ms']:.2f} ms | floor {floor['p50_ms']:.2f} ms | "
        f"{ratios['query_p50_vs_floor']:.2f}x | {verdict('query_p50_vs_floor')} |",
        f"| indexing throughput, requests of 64 | {index['per_second']:.1f} passages/s | "
        f"floor {index_floor['per_second']:.1f} | {ratios['index_vs_floor']:.2f}x | "
        f"{verdict('index_vs_floor')} |",
        f"| query p99, indexing saturated vs idle | {loaded['p99_ms']:.1f} vs "
        f"{quiet['p99_ms']:.1f} ms | | {ratios['saturated_p99_vs_idle_p99']:.2f}x | "
        f"{verdict('saturated_p99_vs_idle')} |",
        f"| query p50 vs baseline | {idle['p50_ms']:.2f} ms | baseline "
        f"{baseline['query_sequential']['p50_ms']:.1f} ms | "
        f"{targets['vs_baseline_query_p50']['value']:.1f}x | |",
        f"| query p99 under saturated indexing vs baseline | {loaded['p99_ms']:.1f} ms | "
        f"baseline {baseline['query_saturated']['p99_ms']:,.0f} ms | "
        f"{targets['vs_baseline_saturated_p99']['value']:.0f}x | |",
        f"| indexing vs baseline | {index['per_second']:.1f} passages/s | baseline "
        f"{baseline['index_http']['per_second']:.1f} | "
        f"{targets['vs_baseline_index_throughput']['value']:.2f}x | |",
    ]
    start = result["machine"]["load_average_at_start"][0]
    end = result["machine"]["load_average_at_end"][0]
    return (
        "\n".join(rows) + f"\n\n(one run, {result['timestamp'][:10]}; load average "
        f"{start:.1f} at the start, {end:.1f} at the end)\n"
    )


RENDERERS: dict[str, Callable[[dict[str, Any]], str]] = {
    "replica_lag": replica_lag,
    "replica_lag_two_hosts": replica_lag,
    "source_sync": source_sync,
    "access_latency": access_latency,
    "search_breakdown": search_breakdown,
    "ingest_throughput": ingest_throughput,
    "ranking_quality": lambda r: ranking_quality(r) + "\n" + ranking_configurations(r),
    "shard_merge": shard_merge,
    "query_isolation": query_isolation,
    "model_server": model_server,
    "precision_quality": precision_quality,
    "load_burst": load_burst,
    "unauthenticated_body": unauthenticated_body,
    "search_latency": search_latency,
    "search_before_after": search_before_after,
    "search_before_after_api": search_before_after,
    "real_scale": real_scale,
    "real_scale_stages": real_scale_stages,
    "real_scale_cpu": real_scale_cpu,
    "real_scale_before_shared_buffers": real_scale,
    "real_scale_before_all_visible": real_scale,
}


# Tables drawn from another table's results file (by default a table's file is its name).
RESULT_OF_TABLE = {"real_scale_stages": "real_scale", "real_scale_cpu": "real_scale"}


def render(text: str) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group("name")
        source = RESULT_OF_TABLE.get(name, name)
        result = orjson.loads((RESULTS / f"{source}.json").read_bytes())
        return match.group(1) + RENDERERS[name](result) + match.group(4)

    return BLOCK.sub(replace, text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail when a table is stale")
    args = parser.parse_args()
    stale = []
    for document in DOCUMENTS:
        text = document.read_text()
        rendered = render(text)
        if rendered != text:
            stale.append(document)
            if not args.check:
                document.write_text(rendered)
    if args.check and stale:
        names = ", ".join(str(d.relative_to(ROOT)) for d in stale)
        sys.exit(
            f"tables differ from benchmarks/results/*.json in {names}: "
            "run python -m benchmarks.tables"
        )


if __name__ == "__main__":
    main()
