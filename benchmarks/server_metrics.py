"""Where a request's time goes, from the Tandem server's own Prometheus counters.

Scraped before and after a measurement, the deltas split the latency a client sees into
time outside the app (client library, TCP, uvicorn's HTTP parsing, event-loop wake-ups),
time in the app outside the forward pass (FastAPI, validation, tokenizing, scheduler
hand-offs, JSON) and the forward pass itself.
"""

from __future__ import annotations

import httpx

from benchmarks.load import EMBED_PATH, LatencyRun

Samples = dict[str, float]


def scrape(url: str) -> Samples:
    """Every sample as {'name{labels}': value}, labels as the server renders them."""
    text = httpx.get(f"{url}/metrics", timeout=10.0).raise_for_status().text
    samples: Samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            samples[key] = float(value)
    return samples


def _growth(before: Samples, after: Samples, name: str, label: str = "") -> float:
    """How much a counter grew, summed over its label sets that contain ``label``."""
    return sum(
        value - before.get(key, 0.0)
        for key, value in after.items()
        if key.split("{", 1)[0] == name and label in key
    )


def breakdown(before: Samples, after: Samples, client: LatencyRun) -> dict[str, float]:
    """Mean milliseconds per request, split by where they were spent."""
    endpoint = f'endpoint="{EMBED_PATH}"'
    requests = _growth(before, after, "tandem_request_seconds_count", endpoint)
    batches = _growth(before, after, "tandem_inference_seconds_count")
    if not requests or not batches or not client.seconds:
        return {}
    observed = sum(client.seconds) / len(client.seconds)
    in_app = _growth(before, after, "tandem_request_seconds_sum", endpoint) / requests
    forward = _growth(before, after, "tandem_inference_seconds_sum") / requests
    return {
        "client_observed_ms": observed * 1000,
        "client_cpu_ms": client.client_cpu_seconds / len(client.seconds) * 1000,
        "outside_app_ms": (observed - in_app) * 1000,
        "in_app_excluding_forward_ms": (in_app - forward) * 1000,
        "forward_pass_share_ms": forward * 1000,
        "mean_batch_size": _growth(before, after, "tandem_batch_size_sum") / batches,
        "forward_pass_mean_ms": _growth(before, after, "tandem_inference_seconds_sum")
        / batches
        * 1000,
    }
