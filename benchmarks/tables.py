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


RENDERERS: dict[str, Callable[[dict[str, Any]], str]] = {
    "source_sync": source_sync,
    "access_latency": access_latency,
    "query_isolation": query_isolation,
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
