"""Status of a model server for the status page, gathered by the component that uses it.

The API server probes the inference server and the workers probe the indexing server (each
talks only to its own model server); workers publish to Redis, where the API reads it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import httpx
import orjson
from redis import Redis
from redis.exceptions import RedisError

from tandem.model_client.metrics import (
    MetricsReading,
    counter_increase,
    histogram_increase,
    histogram_quantile,
    parse_metrics,
)

log = logging.getLogger(__name__)

INDEXING_STATUS_KEY = "tandem:status:indexing-model-server"
PROBE_INTERVAL_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class ModelServerStatus:
    """One probe. Rates and latencies cover the time since the previous probe (None on the
    first probe, and latencies also when no model request was answered in between)."""

    url: str
    ready: bool
    queue_items: float | None
    requests_total: float | None
    requests_per_second: float | None
    checked_at: str
    items_per_second: float | None = None  # texts (passages, queries) or pairs embedded
    latency_p50_ms: float | None = None  # of the model endpoints' requests
    latency_p99_ms: float | None = None

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))


@dataclass(frozen=True, slots=True)
class IntervalFigures:
    requests_per_second: float
    items_per_second: float
    latency_p50_ms: float | None
    latency_p99_ms: float | None


def interval_figures(
    before: MetricsReading, after: MetricsReading, seconds: float
) -> IntervalFigures:
    """Rates and latency quantiles between two readings `seconds` apart."""
    latency = histogram_increase(before.latency, after.latency)

    def quantile_ms(q: float) -> float | None:
        value = histogram_quantile(q, latency)
        return None if value is None else round(value * 1000.0, 3)

    return IntervalFigures(
        requests_per_second=round(counter_increase(before.requests, after.requests) / seconds, 3),
        items_per_second=round(counter_increase(before.items, after.items) / seconds, 3),
        latency_p50_ms=quantile_ms(0.5),
        latency_p99_ms=quantile_ms(0.99),
    )


class StatusProbe:
    """Polls one model server every few seconds in a daemon thread."""

    def __init__(
        self,
        url: str,
        publish: Callable[[ModelServerStatus], None],
        interval: float = PROBE_INTERVAL_SECONDS,
    ) -> None:
        self.url = url
        self.interval = interval
        self._publish = publish
        self._stop = threading.Event()
        self._previous: tuple[float, MetricsReading] | None = None  # (monotonic time, reading)
        self._thread = threading.Thread(target=self._run, name="model-status", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2 * self.interval)

    def probe(self, client: httpx.Client) -> ModelServerStatus:
        ready, reading, figures = False, None, None
        try:
            ready = client.get(f"{self.url}/api/ready").status_code == 200
            reading = parse_metrics(client.get(f"{self.url}/metrics").text)
        except httpx.HTTPError:
            self._previous = None
        else:
            now = time.monotonic()
            if self._previous is not None and now > self._previous[0]:
                figures = interval_figures(self._previous[1], reading, now - self._previous[0])
            self._previous = (now, reading)
        return ModelServerStatus(
            url=self.url,
            ready=ready,
            queue_items=None if reading is None else reading.queued,
            requests_total=None if reading is None else reading.requests,
            requests_per_second=None if figures is None else figures.requests_per_second,
            checked_at=datetime.now(UTC).isoformat(),
            items_per_second=None if figures is None else figures.items_per_second,
            latency_p50_ms=None if figures is None else figures.latency_p50_ms,
            latency_p99_ms=None if figures is None else figures.latency_p99_ms,
        )

    def _run(self) -> None:
        with httpx.Client(timeout=2.0) as client:
            while not self._stop.is_set():
                self._publish(self.probe(client))
                self._stop.wait(self.interval)


def redis_publisher(
    redis: Redis, key: str, ttl_seconds: int
) -> Callable[[ModelServerStatus], None]:
    def publish(status: ModelServerStatus) -> None:
        try:
            redis.set(key, status.to_json(), ex=ttl_seconds)
        except RedisError as exc:
            log.warning("status_publish_failed key=%s error=%s", key, exc)

    return publish


def read_published(redis: Redis, key: str) -> dict[str, object] | None:
    try:
        raw = redis.get(key)
    except RedisError:
        return None
    if not isinstance(raw, bytes):
        return None
    value: dict[str, object] = orjson.loads(raw)
    return value
