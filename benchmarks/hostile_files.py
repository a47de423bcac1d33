"""Hostile files through the parsing sandbox: for each file of the generated corpus
(benchmarks/hostile_corpus.py), how it ended, how long it took and the child's peak
memory; and what the sandbox itself costs (a child's start, a request's round trip next
to parsing in process). Writes benchmarks/results/hostile_files.json. A child's peak is
its VmHWM during the parse, reset before each (so RUSAGE_CHILDREN's ru_maxrss, which the
reset lowers too, is not reported).

    PYTHONPATH=src:. python -m benchmarks.hostile_files
"""

from __future__ import annotations

import re
import resource
import time
from typing import Any

from benchmarks.hostile_corpus import MIB, hostile_corpus
from benchmarks.results_io import write_result
from tandem.worker.parsing import parse_document
from tandem.worker.sandbox import SandboxedParser, SandboxLimits

SMALL = (b"# Notes\n\nThe heron waded into the marsh at dawn.\n", "notes.md")
ROUND_TRIPS = 200
# The Markdown heading pattern before the fix, on the input the bug was measured with.
OLD_HEADING = re.compile(r"^ {0,3}#[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*$")


def _old_pattern_seconds(spaces: int) -> float:
    started = time.perf_counter()
    OLD_HEADING.match("# a" + " " * spaces + "b")
    return time.perf_counter() - started


def _overhead(parser: SandboxedParser) -> dict[str, float]:
    data, name = SMALL
    started = time.perf_counter()
    for _ in range(ROUND_TRIPS):
        parser.parse(name, data, None)
    sandboxed = (time.perf_counter() - started) / ROUND_TRIPS
    started = time.perf_counter()
    for _ in range(ROUND_TRIPS):
        parse_document(name, data, None)
    in_process = (time.perf_counter() - started) / ROUND_TRIPS
    return {"sandboxed_ms": sandboxed * 1000, "in_process_ms": in_process * 1000}


def main() -> None:
    started = time.perf_counter()
    corpus = hostile_corpus()
    built = time.perf_counter() - started
    limits = SandboxLimits(timeout_seconds=30, memory_bytes=1024 * MIB)
    started = time.perf_counter()
    parser = SandboxedParser(limits)
    try:
        if not parser.wait_ready(120):
            raise SystemExit("no parser child started")
        startup = time.perf_counter() - started
        overhead = _overhead(parser)
        parent_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        files: list[dict[str, Any]] = []
        for hostile in corpus:
            outcome = parser.run(hostile.filename, hostile.data, hostile.content_type)
            ended = (
                f"parsed: {len(outcome.document.text):,} characters"
                if outcome.document is not None
                else f"failed: {outcome.error}"
            )
            files.append(
                {
                    "name": hostile.name,
                    "bytes": len(hostile.data),
                    "seconds": round(outcome.seconds, 3),
                    "child_peak_rss_mib": round((outcome.peak_rss_bytes or 0) / MIB, 1),
                    "child_rss_at_start_mib": round((outcome.rss_at_start_bytes or 0) / MIB, 1),
                    "outcome": ended,
                    "error_type": type(outcome.error).__name__ if outcome.error else None,
                }
            )
            print(
                f"{hostile.name:32} {outcome.seconds:7.2f} s "
                f"{(outcome.rss_at_start_bytes or 0) / MIB:6.1f} -> "
                f"{(outcome.peak_rss_bytes or 0) / MIB:6.1f} MiB  {ended[:80]}"
            )
        parent_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        after = parser.run(SMALL[1], SMALL[0], None)
    finally:
        parser.close()
    result = {
        "limits": {"timeout_seconds": limits.timeout_seconds, "memory_bytes": limits.memory_bytes},
        "corpus_build_seconds": round(built, 2),
        "child_start_seconds": round(startup, 2),
        "request_overhead": overhead,
        "files": files,
        "normal_file_after_corpus_parsed": after.document is not None,
        "parent_peak_rss_growth_mib": round((parent_after - parent_before) / MIB, 1),
        "old_heading_pattern_seconds": {
            str(n): round(_old_pattern_seconds(n), 3) for n in (2_000, 4_000, 8_000)
        },
    }
    print(
        f"child start {startup:.2f} s; a small parse {overhead['sandboxed_ms']:.2f} ms "
        f"sandboxed, {overhead['in_process_ms']:.2f} ms in process; parent grew "
        f"{result['parent_peak_rss_growth_mib']} MiB"
    )
    print(f"wrote {write_result('hostile_files', result)}")


if __name__ == "__main__":
    main()
