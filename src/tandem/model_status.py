"""Status of a model server for the status page, gathered by the component that uses it.

The API server probes the inference server and the workers probe the indexing server (each
talks only to its own model server); workers publish to Redis, where the API reads it.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import httpx
import orjson
from redis import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

INDEXING_STATUS_KEY = "tandem:status:indexing-model-server"
PROBE_INTERVAL_SECONDS = 5.0
SAMPLE = re.compile(r"^(?P<name>[a-z_]+)\{(?P<labels>[^}]*)\}\s+(?P<value>[0-9.eE+-]+)$")
OPS_ENDPOINTS = ('endpoint="/api/health"', 'endpoint="/api/ready"', 'endpoint="/metrics"')


@dataclass(frozen=True, slots=True)
class ModelServerStatus:
    url: str
    ready: bool
    queue_items: float | None
    requests_total: float | None
    requests_per_second: float | None
    checked_at: str

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))


def parse_metrics(text: str) -> tuple[float, float]:
    """(items queued, work requests served so far) from a model server's /metrics."""
    queued = requests = 0.0
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if match is None:
            continue
        name, labels, value = match["name"], match["labels"], float(match["value"])
        if name == "tandem_queue_items":
            queued += value
        elif name == "tandem_requests_total" and not any(op in labels for op in OPS_ENDPOINTS):
            requests += value
    return queued, requests


class StatusProbe:
    """Polls one model server every few seconds in a daemon thread."""

    def __init__(
        self,
        url: str,
        publish: Callable[[ModelServerStatus], None],
        interval: float = PROBE_INTERVAL_SECONDS,
    ) -> None:
        self.url = url
        self._publish = publish
        self._interval = interval
        self._stop = threading.Event()
        self._previous: tuple[float, float] | None = None  # (monotonic time, requests)
        self._thread = threading.Thread(target=self._run, name="model-status", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2 * self._interval)

    def probe(self, client: httpx.Client) -> ModelServerStatus:
        ready, queued, total, rate = False, None, None, None
        try:
            ready = client.get(f"{self.url}/api/ready").status_code == 200
            queued, total = parse_metrics(client.get(f"{self.url}/metrics").text)
        except httpx.HTTPError:
            self._previous = None
        else:
            now = time.monotonic()
            if self._previous is not None and now > self._previous[0]:
                rate = max(0.0, (total - self._previous[1]) / (now - self._previous[0]))
            self._previous = (now, total)
        return ModelServerStatus(
            url=self.url,
            ready=ready,
            queue_items=queued,
            requests_total=total,
            requests_per_second=None if rate is None else round(rate, 3),
            checked_at=datetime.now(UTC).isoformat(),
        )

    def _run(self) -> None:
        with httpx.Client(timeout=2.0) as client:
            while not self._stop.is_set():
                self._publish(self.probe(client))
                self._stop.wait(self._interval)


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
