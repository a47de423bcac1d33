"""Where one search's time goes: wall time per stage, recorded by the code that runs it.

One `StageTimings` belongs to one request and travels down with it (the route makes it,
`tandem.search.Searcher` and the index record into it); nothing is global. Hybrid search
runs stages on two threads at once (the query embedding, BM25 beside HNSW), so recording
is locked and stages of different threads may overlap: their sum can exceed the request's
wall time, which is the point of running them at once. Along one thread stages never
overlap.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum


class Stage(StrEnum):
    """The stages, in the order a search runs them (Server-Timing lists them so)."""

    EMBED = "embed"  # the query vector from the inference server
    CONNECT = "connect"  # a pooled connection (its liveness check included)
    BM25 = "bm25"  # the query's terms and the BM25 top k
    HNSW = "hnsw"  # the HNSW top k (with hybrid: and their BM25, same statement)
    COSINES = "cosines"  # hybrid: the BM25 candidates' semantic scores
    FUSION = "fusion"  # both lists into one ranking
    PAGE = "page"  # grouping by document, the page, its rows: one statement
    RERANK = "rerank"  # the cross-encoder, when asked
    SNIPPETS = "snippets"  # highlighted windows of the page's chunks
    SERIALIZE = "serialize"  # the response body


class StageTimings:
    """Seconds per stage of one search (a stage run twice, as in a second pool round,
    adds up)."""

    def __init__(self) -> None:
        self._seconds: dict[Stage, float] = {}
        self._lock = threading.Lock()

    @contextmanager
    def stage(self, name: Stage) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - started)

    def add(self, name: Stage, seconds: float) -> None:
        with self._lock:
            self._seconds[name] = self._seconds.get(name, 0.0) + seconds

    def seconds(self) -> dict[Stage, float]:
        """{stage: seconds} of the stages that ran, in `Stage` order."""
        with self._lock:
            return {s: self._seconds[s] for s in Stage if s in self._seconds}
