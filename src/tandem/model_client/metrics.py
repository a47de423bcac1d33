"""What the status page needs from a model server's Prometheus `/metrics` text, and the
arithmetic between two readings: rates of counters and latency quantiles of a histogram.

Metric names are those of `tandem.model_server.metrics.ModelServerMetrics`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)\{(?P<labels>[^}]*)\}\s+(?P<value>\S+)$")
LABEL = re.compile(r'(?P<key>[a-zA-Z_][a-zA-Z0-9_]*)="(?P<value>(?:[^"\\]|\\.)*)"')
# Liveness, readiness and scraping are not work: they stay out of rates and latencies.
OPS_ENDPOINTS = frozenset({"/api/health", "/api/ready", "/metrics"})
# Requests that run the model: their latency is what a search waits for.
MODEL_ENDPOINTS = frozenset(
    {
        "/encoder/bi-encoder-embed",
        "/encoder/cross-encoder-scores",
        "/v1/embeddings",
        "/embed",
        "/rerank",
    }
)


@dataclass(frozen=True, slots=True)
class MetricsReading:
    """Counters and gauges of one scrape."""

    queued: float  # items waiting to be batched, all models
    requests: float  # work requests answered so far (ops endpoints excluded)
    items: float  # texts or pairs through the model so far
    # Cumulative latency histogram of the model endpoints: upper bound -> count (with +inf).
    latency: Mapping[float, float]


def _labels(text: str) -> dict[str, str]:
    return {m["key"]: m["value"] for m in LABEL.finditer(text)}


def parse_metrics(text: str) -> MetricsReading:
    queued = requests = items = 0.0
    latency: dict[float, float] = {}
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if match is None:
            continue
        try:
            value = float(match["value"])
        except ValueError:
            continue
        name, labels = match["name"], _labels(match["labels"])
        endpoint = labels.get("endpoint", "")
        if name == "tandem_queue_items":
            queued += value
        elif name == "tandem_items_total":
            items += value
        elif name == "tandem_requests_total" and endpoint not in OPS_ENDPOINTS:
            requests += value
        elif name == "tandem_request_seconds_bucket" and endpoint in MODEL_ENDPOINTS:
            bound = float(labels["le"])  # "+Inf" parses to inf
            latency[bound] = latency.get(bound, 0.0) + value
    return MetricsReading(queued, requests, items, latency)


def counter_increase(before: float, after: float) -> float:
    """A counter's increase; a smaller value means the server restarted from zero."""
    return after - before if after >= before else after


def histogram_increase(
    before: Mapping[float, float], after: Mapping[float, float]
) -> dict[float, float]:
    if any(after.get(bound, 0.0) < count for bound, count in before.items()):
        return dict(after)  # restarted: everything counted since is new
    return {bound: count - before.get(bound, 0.0) for bound, count in after.items()}


def histogram_quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """Prometheus's `histogram_quantile`: the q-quantile of cumulative `buckets`,
    interpolated linearly inside the bucket it falls in; None without observations.
    A quantile in the +inf bucket is reported as the highest finite bound."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank = q * buckets[bounds[-1]]
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank and count > below:
            if math.isinf(bound):
                return lower
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = (lower if math.isinf(bound) else bound), count
    return lower
