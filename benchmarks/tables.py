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
        f"(**{folder['second_over_first_time']:.1%}** of the first) | ≤ 10% |",
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


RENDERERS: dict[str, Callable[[dict[str, Any]], str]] = {"source_sync": source_sync}


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
