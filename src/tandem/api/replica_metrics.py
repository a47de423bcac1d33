"""The API server's Prometheus metrics: each read replica's health and lag, as the
replica monitor last measured them, and the router's reads by where they ran and how they
ended (one registry per app, no process-global state)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from tandem.db.replicas import ReadRouter, ReplicaStatus


class ReplicaCollector(Collector):
    def __init__(self, router: ReadRouter) -> None:
        self._router = router

    def collect(self) -> Iterator[Metric]:
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
        yield from self._reads()

    def _reads(self) -> Iterator[Metric]:
        counts = self._router.counts.snapshot()
        reads = CounterMetricFamily(
            "tandem_reads",
            "Reads by where they ran (a replica or the primary) and how they ended: served,"
            " behind (the replica had not replayed the newest succeeded attempt: read"
            " again elsewhere) or failed",
            labels=["target", "outcome"],
        )
        for (target, outcome), count in sorted(counts.reads.items()):
            reads.add_metric([target, outcome.value], count)
        waits = CounterMetricFamily(
            "tandem_read_replica_catch_up_waits",
            "Read transactions that waited for their replica to replay the newest succeeded"
            " attempt",
            labels=["replica"],
        )
        waited = CounterMetricFamily(
            "tandem_read_replica_catch_up_seconds",
            "Seconds read transactions waited for their replica's replay",
            labels=["replica"],
        )
        for replica, count in sorted(counts.catch_up_waits.items()):
            waits.add_metric([replica], count)
            waited.add_metric([replica], counts.catch_up_seconds[replica])
        yield from (reads, waits, waited)


def status_out(status: ReplicaStatus) -> dict[str, object]:
    """One replica in /api/stats (never its URL: it holds a password)."""
    return {
        "name": status.name,
        "healthy": status.healthy,
        "lag_seconds": None if status.lag_seconds is None else round(status.lag_seconds, 3),
        "lag_bytes": status.lag_bytes,
        "detail": status.detail,
    }
