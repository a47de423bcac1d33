"""The API server's Prometheus metrics: each search's time by mode and stage, one registry
per app (no process-global state), rendered at `GET /metrics`."""

from __future__ import annotations

from collections.abc import Mapping

from tandem.http.metrics import MetricsRegistry
from tandem.index.stage_timings import Stage

# Stages take from tens of microseconds (fusion) to tens of milliseconds (a query embedding
# on a busy machine): finer at the bottom than the model server's buckets.
STAGE_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.002,
    0.004,
    0.008,
    0.016,
    0.032,
    0.064,
    0.128,
    0.256,
    0.512,
    1.0,
    2.0,
)


class SearchMetrics(MetricsRegistry):
    def __init__(self) -> None:
        super().__init__()
        self.stage_seconds = self.histogram(
            "tandem_search_stage_seconds",
            "Wall time of one stage of a search (hybrid runs some at once), by requested mode",
            ["mode", "stage"],
            STAGE_BUCKETS,
        )
        self.search_seconds = self.histogram(
            "tandem_search_seconds",
            "Wall time of a search in the API route, response body included, by requested mode",
            ["mode"],
            STAGE_BUCKETS,
        )

    def observe(self, mode: str, stages: Mapping[Stage, float], total: float) -> None:
        for stage, seconds in stages.items():
            self.stage_seconds.labels(mode, stage.value).observe(seconds)
        self.search_seconds.labels(mode).observe(total)


def server_timing(stages: Mapping[Stage, float], total: float) -> str:
    """A `Server-Timing` header value (W3C): each stage, then `total`, in milliseconds."""
    parts = [f"{stage.value};dur={seconds * 1000:.3f}" for stage, seconds in stages.items()]
    return ", ".join([*parts, f"total;dur={total * 1000:.3f}"])
