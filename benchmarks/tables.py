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

ROOT = Path(__file__).parent.parent
RESULTS = Path(__file__).parent / "results"
DOCUMENTS = (ROOT / "README.md", Path(__file__).parent / "README.md")
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


def replica_lag(result: dict[str, Any]) -> str:
    ingest, failover, idle = result["ingest"], result["failover"], result["idle"]
    lag = ingest["replay_lag_ms"]
    ryw = ingest["read_your_writes"]
    rows = [
        "| one primary + one standby on one machine | measured | target |",
        "|---|---|---|",
        f"| replay lag during bulk ingest ({ingest['bulk_documents']:,} documents, "
        f"`pg_stat_replication.replay_lag`) p50 / p99 | {lag['p50']:.0f} / "
        f"**{lag['p99']:.0f} ms** | p99 ≤ 1 s |",
    ]
    for mode, ratio in result["ratios"].items():
        primary, replica = idle[mode]["primary_ms"], idle[mode]["replica_ms"]
        during = ingest["search_ms"][mode]
        rows.append(
            f"| {mode} search p50: idle primary / idle standby / standby during ingest | "
            f"{primary['p50']:.1f} / {replica['p50']:.1f} / {during['p50']:.1f} ms "
            f"(**{ratio['idle_replica_over_idle_primary_p50']:.2f}x** idle, "
            f"**{ratio['ingest_replica_over_idle_primary_p50']:.2f}x** during ingest) | ≤ 1.2x |"
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
    return (
        "\n".join(rows) + f"\n\n(benchmarks/replica_lag.py; one run, load average {load:.1f}; "
        "the standby shares the machine's two cores with everything else)\n"
    )


RENDERERS: dict[str, Callable[[dict[str, Any]], str]] = {
    "replica_lag": replica_lag,
    "source_sync": source_sync,
    "access_latency": access_latency,
}


def render(text: str) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group("name")
        result = orjson.loads((RESULTS / f"{name}.json").read_bytes())
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
