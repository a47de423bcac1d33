"""The worker's own stage timings, as the ingest benchmark asks for and reads them.

`tandem worker` with TANDEM_WORKER_TIMINGS_FILE set appends one JSON line per claimed
batch (tandem.worker.stages.BatchTimings): its wall interval, items, passages, wall and
thread CPU seconds per stage (claim, hash, lookup, parse, chunk, embed, store,
finish_attempts) and the interval of each
embedding request (when the indexing server had this worker's work). No patching: the
benchmark runs the worker exactly as deployed, with one more environment variable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from benchmarks.ingest_analysis import covered_seconds

TIMINGS_FILE_VARIABLE = "TANDEM_WORKER_TIMINGS_FILE"
STAGES = ("claim", "hash", "lookup", "parse", "chunk", "embed", "store", "finish_attempts")


def read_batches(path: Path, start: float, end: float) -> list[dict[str, Any]]:
    """The non-empty batches that started within [start, end]."""
    if not path.exists():
        return []
    batches = [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
    return [b for b in batches if b["items"] and start <= b["started"] <= end]


def stage_summary(batches: list[dict[str, Any]], start: float, end: float) -> dict[str, Any]:
    """Per document: milliseconds per stage (summed over the worker's threads); batches and
    their sizes; how many batches were in flight on average; and the share of the wall
    time with an embedding request open (the rest, the indexing server had nothing from
    this worker)."""
    if not batches:
        return {}
    wall = end - start
    documents = sum(b["items"] for b in batches)
    batch_seconds = sum(b["ended"] - b["started"] for b in batches)
    stages = {s: sum(b["stages"].get(s, 0.0) for b in batches) for s in STAGES}
    stages["other"] = batch_seconds - sum(stages.values())
    requests = [tuple(i) for b in batches for i in b["embed_intervals"]]
    return {
        "batches": len(batches),
        "mean_batch_documents": documents / len(batches),
        "mean_batch_passages": sum(b["passages"] for b in batches) / len(batches),
        "embed_requests": len(requests),
        "mean_batches_in_flight": batch_seconds / wall,
        "stage_ms_per_document": {s: v / documents * 1000 for s, v in stages.items()},
        "stage_share_of_batch_time": {s: v / batch_seconds for s, v in stages.items()},
        "embed_request_open_share": covered_seconds(requests, start, end) / wall,
        "seconds_before_first_batch": min(b["started"] for b in batches) - start,
        "seconds_after_last_batch": end - max(b["ended"] for b in batches),
    }
