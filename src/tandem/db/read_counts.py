"""How the API's reads went: where each ran (a replica, or the primary) and how it ended,
and how long reads waited for a replica to replay what they must see. Kept by the
`ReadRouter` (tandem.db.replicas), exported as Prometheus counters by the API."""

from __future__ import annotations

import enum
import threading
from collections import Counter, defaultdict
from dataclasses import dataclass


class ReadOutcome(enum.StrEnum):
    SERVED = "served"  # its result was returned
    BEHIND = "behind"  # a replica had not replayed the newest succeeded attempt: read again
    FAILED = "failed"  # the replica failed it (connection lost, query cancelled by replay)


@dataclass(frozen=True, slots=True)
class ReadCountsSnapshot:
    reads: dict[tuple[str, ReadOutcome], int]  # (target, outcome): reads
    catch_up_waits: dict[str, int]  # replica: transactions that waited for its replay
    catch_up_seconds: dict[str, float]  # replica: seconds those waits took


class ReadCounts:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reads: Counter[tuple[str, ReadOutcome]] = Counter()
        self._waits: Counter[str] = Counter()
        self._wait_seconds: defaultdict[str, float] = defaultdict(float)

    def read(self, target: str, outcome: ReadOutcome) -> None:
        with self._lock:
            self._reads[(target, outcome)] += 1

    def waited(self, replica: str, seconds: float) -> None:
        with self._lock:
            self._waits[replica] += 1
            self._wait_seconds[replica] += seconds

    def snapshot(self) -> ReadCountsSnapshot:
        with self._lock:
            return ReadCountsSnapshot(
                dict(self._reads), dict(self._waits), dict(self._wait_seconds)
            )
