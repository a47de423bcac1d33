"""The last few minutes of the status page's charts, kept in memory by the API server.

Each time the API server probes its inference server it also reads what the workers last
published about the indexing server and how many uploaded items wait for a worker, and
appends one sample. The ring is bounded and belongs to one app's lifespan; nothing is stored.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from tandem.model_client.status import PROBE_INTERVAL_SECONDS, ModelServerStatus

HISTORY_WINDOW_SECONDS = 300.0


@dataclass(frozen=True, slots=True)
class MetricsSample:
    at: float  # Unix time of the sample
    query_p50_ms: float | None  # inference server, model requests since the last sample
    query_p99_ms: float | None
    queries_per_second: float | None
    indexing_passages_per_second: float | None  # indexing server, as the workers report it
    indexing_queue_items: float | None
    # Uploaded files waiting for a worker / being indexed (PostgreSQL is the work queue).
    worker_items_waiting: int | None
    worker_items_running: int | None


def _number(report: Mapping[str, object], key: str) -> float | None:
    value = report.get(key)
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def _fresh(report: Mapping[str, object], now: float, max_age: float) -> bool:
    checked = report.get("checked_at")
    if not isinstance(checked, str):
        return False
    try:
        at = datetime.fromisoformat(checked).timestamp()
    except ValueError:
        return False
    return now - at <= max_age


def sample_from(
    inference: ModelServerStatus | None,
    indexing: Mapping[str, object] | None,
    worker_items: tuple[int, int] | None,
    *,
    now: float,
    max_report_age: float,
) -> MetricsSample:
    """One sample; an indexing report older than `max_report_age` seconds is a gap (no
    worker is probing the indexing server), not a repeated stale value."""
    if indexing is not None and not _fresh(indexing, now, max_report_age):
        indexing = None
    return MetricsSample(
        at=now,
        query_p50_ms=inference.latency_p50_ms if inference else None,
        query_p99_ms=inference.latency_p99_ms if inference else None,
        queries_per_second=inference.requests_per_second if inference else None,
        indexing_passages_per_second=_number(indexing, "items_per_second") if indexing else None,
        indexing_queue_items=_number(indexing, "queue_items") if indexing else None,
        worker_items_waiting=worker_items[0] if worker_items else None,
        worker_items_running=worker_items[1] if worker_items else None,
    )


class MetricsHistory:
    """A bounded ring of samples, safe to append from the probe thread while routes read."""

    def __init__(
        self,
        window_seconds: float = HISTORY_WINDOW_SECONDS,
        interval_seconds: float = PROBE_INTERVAL_SECONDS,
    ) -> None:
        if window_seconds <= 0 or interval_seconds <= 0:
            raise ValueError("window_seconds and interval_seconds must be positive")
        self.window_seconds = window_seconds
        self.interval_seconds = interval_seconds
        self._samples: deque[MetricsSample] = deque(
            maxlen=math.ceil(window_seconds / interval_seconds) + 1
        )
        self._lock = threading.Lock()

    def add(self, sample: MetricsSample) -> None:
        with self._lock:
            self._samples.append(sample)

    def samples(self, now: float | None = None) -> list[MetricsSample]:
        """The samples of the window, oldest first."""
        since = (time.time() if now is None else now) - self.window_seconds
        with self._lock:
            return [s for s in self._samples if s.at >= since]
