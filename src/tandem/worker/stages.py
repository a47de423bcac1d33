"""The stages a claimed batch passes through, and what can watch them.

An observer hears each stage as it is reached and each batch's timings when it ends. The
worker composes two: a JSON-lines timings file (benchmarks/ingest_worker.py reads it) and,
for fault-injection tests, a hold that stops a thread at one stage so the test can kill
the process at exactly that point.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Protocol

import orjson


class Stage(StrEnum):
    CLAIMED = "claimed"  # items claimed under lease; nothing parsed
    PREPARED = "prepared"  # parsed and chunked; nothing embedded
    EMBEDDED = "embedded"  # an embedding request answered; none of it stored
    WRITTEN = "written"  # chunks, catalog rows and outcomes written, not committed
    COMMITTED = "committed"  # one group committed; later groups and the attempts not yet
    FINISHED = "finished"  # all recorded; the broker message not yet acknowledged


@dataclass
class BatchTimings:
    """Where one batch's time went: `stages` in seconds of wall clock, `cpu` in CPU
    seconds of this thread (time.thread_time; a parser child's CPU is its own)."""

    origin: str
    redelivered: bool
    started: float
    ended: float = 0.0
    items: int = 0
    passages: int = 0
    indexed: int = 0
    failed: int = 0
    unchanged: int = 0  # content as indexed already: nothing parsed or embedded
    released: int = 0
    stages: dict[str, float] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)
    # (start, end) of each embedding request: when the indexing server had our work.
    embed_intervals: list[tuple[float, float]] = field(default_factory=list)

    def add(self, stage: str, seconds: float, cpu_seconds: float = 0.0) -> None:
        self.stages[stage] = self.stages.get(stage, 0.0) + seconds
        self.cpu[stage] = self.cpu.get(stage, 0.0) + cpu_seconds

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        """Adds the block's wall and thread CPU time to `stage`."""
        started, cpu = time.perf_counter(), time.thread_time()
        try:
            yield
        finally:
            self.add(stage, time.perf_counter() - started, time.thread_time() - cpu)


class StageObserver(Protocol):
    def reached(self, stage: Stage, item_ids: Sequence[int]) -> None: ...

    def batch_done(self, timings: BatchTimings) -> None: ...


class NoObserver:
    def reached(self, stage: Stage, item_ids: Sequence[int]) -> None:
        return None

    def batch_done(self, timings: BatchTimings) -> None:
        return None


class Observers:
    def __init__(self, observers: Sequence[StageObserver]) -> None:
        self._observers = list(observers)

    def reached(self, stage: Stage, item_ids: Sequence[int]) -> None:
        for observer in self._observers:
            observer.reached(stage, item_ids)

    def batch_done(self, timings: BatchTimings) -> None:
        for observer in self._observers:
            observer.batch_done(timings)


class TimingsFile:
    """Appends one JSON line per batch; a line is written whole under a lock."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()

    def reached(self, stage: Stage, item_ids: Sequence[int]) -> None:
        return None

    def batch_done(self, timings: BatchTimings) -> None:
        line = orjson.dumps(asdict(timings)) + b"\n"
        with self._lock, self._path.open("ab") as out:
            out.write(line)
