"""The API server's Prometheus metrics: each read replica's health and lag, as the
replica monitor last measured them (one registry per app, no process-global state)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from tandem.db.replicas import ReadRouter, ReplicaStatus


class ReplicaCollector(Collector):
    def __init__(self, router: ReadRouter) -> None:
        self._router = router

    def collect(self) -> Iterator[GaugeMetricFamily]:
        healthy = GaugeMetricFamily(
            "tandem_read_replica_healthy", "1 while the replica serves reads", labels=["replica"]
        )
        seconds = GaugeMetricFamily(
            "tandem_read_replica_lag_seconds",
            "How old the oldest change the replica has not replayed can be",
            labels=["replica"],
        )
        lag_bytes = GaugeMetricFamily(
            "tandem_read_replica_lag_bytes",
            "WAL bytes between the primary's position and the replica's replay position",
            labels=["replica"],
        )
        for status in self._router.statuses():
            healthy.add_metric([status.name], 1.0 if status.healthy else 0.0)
            if status.lag_seconds is not None:
                seconds.add_metric([status.name], status.lag_seconds)
            if status.lag_bytes is not None:
                lag_bytes.add_metric([status.name], float(status.lag_bytes))
        yield from (healthy, seconds, lag_bytes)


def status_out(status: ReplicaStatus) -> dict[str, object]:
    """One replica in /api/stats (never its URL: it holds a password)."""
    return {
        "name": status.name,
        "healthy": status.healthy,
        "lag_seconds": None if status.lag_seconds is None else round(status.lag_seconds, 3),
        "lag_bytes": status.lag_bytes,
        "detail": status.detail,
    }
