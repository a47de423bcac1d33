"""`tandem worker` with timing probes: where does each indexed item's time go?

Runs the real worker (`tandem.cli worker`, same settings, same code) after wrapping the
functions one item passes through with a timer; each finished item appends one JSON line
to $TANDEM_BENCH_PHASES_FILE: its wall interval and the seconds spent per phase, with the
embedding requests' own intervals (to see when the indexing server had work). A timer
costs about a microsecond; an item takes tens of milliseconds.

    python -m benchmarks.ingest_worker [worker options]
"""

from __future__ import annotations

import functools
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import orjson

PHASES_FILE_VARIABLE = "TANDEM_BENCH_PHASES_FILE"
PHASES = ("start_item", "parse", "chunk", "embed", "store_chunks", "finish_item")

F = TypeVar("F", bound=Callable[..., Any])


class ItemRecorder:
    """Per-thread accounting of the item being indexed; one JSON line per item."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._local = threading.local()

    def _current(self) -> dict[str, Any] | None:
        current: dict[str, Any] | None = getattr(self._local, "item", None)
        return current

    def timed(self, phase: str, function: F) -> F:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.time()
            try:
                return function(*args, **kwargs)
            finally:
                ended = time.time()
                item = self._current()
                if item is not None:
                    item["phases"][phase] = item["phases"].get(phase, 0.0) + ended - started
                    if phase == "embed":
                        item["embed_intervals"].append((started, ended))

        return wrapper  # type: ignore[return-value]

    def item(self, function: F) -> F:
        @functools.wraps(function)
        def wrapper(pipeline: Any, item_id: int) -> Any:
            self._local.item = {"phases": {}, "embed_intervals": []}
            started = time.time()
            outcome: object = "error"
            try:
                outcome = function(pipeline, item_id)
                return outcome
            finally:
                record = self._local.item | {
                    "item": item_id,
                    "thread": threading.get_ident(),
                    "start": started,
                    "end": time.time(),
                    "outcome": str(outcome),
                }
                self._local.item = None
                line = orjson.dumps(record) + b"\n"
                with self._lock, self._path.open("ab") as out:
                    out.write(line)

        return wrapper  # type: ignore[return-value]


def install(recorder: ItemRecorder) -> None:
    """Wrap what `IndexingPipeline.run` calls, where it looks the names up."""
    from tandem.db import attempts
    from tandem.index.postgres import PostgresIndex
    from tandem.model_client import ModelClient
    from tandem.worker import pipeline
    from tandem.worker.chunking import Chunker

    attempts.start_item = recorder.timed("start_item", attempts.start_item)
    attempts.finish_item = recorder.timed("finish_item", attempts.finish_item)
    pipeline.parse_document = recorder.timed(  # type: ignore[attr-defined]
        "parse",
        pipeline.parse_document,  # type: ignore[attr-defined]
    )
    Chunker.chunk = recorder.timed("chunk", Chunker.chunk)  # type: ignore[method-assign]
    ModelClient.embed = recorder.timed("embed", ModelClient.embed)  # type: ignore[method-assign]
    PostgresIndex.replace_document = recorder.timed(  # type: ignore[method-assign]
        "store_chunks", PostgresIndex.replace_document
    )
    pipeline.IndexingPipeline.run = recorder.item(  # type: ignore[method-assign]
        pipeline.IndexingPipeline.run
    )


def main() -> None:
    path = os.environ.get(PHASES_FILE_VARIABLE)
    if not path:
        sys.exit(f"{PHASES_FILE_VARIABLE} must name the file to append item timings to")
    install(ItemRecorder(Path(path)))
    from tandem.cli import main as tandem_main

    sys.argv = ["tandem", "worker", *sys.argv[1:]]
    tandem_main()


if __name__ == "__main__":
    main()
