"""The model server's Prometheus metrics: requests, queues, batches, forward passes."""

from __future__ import annotations

from tandem.http.metrics import MetricsRegistry

LATENCY_BUCKETS = (0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1, 2, 4, 8)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
TOKEN_BUCKETS = (16, 64, 256, 1024, 4096, 16384, 65536)


class ModelServerMetrics(MetricsRegistry):
    def __init__(self, role: str) -> None:
        super().__init__()
        self.info = self.gauge("tandem_model_server_info", "Role of this model server", ["role"])
        self.info.labels(role).set(1)
        self.requests = self.counter(
            "tandem_requests_total", "HTTP requests by endpoint and status", ["endpoint", "status"]
        )
        self.latency = self.histogram(
            "tandem_request_seconds", "HTTP request latency", ["endpoint"], LATENCY_BUCKETS
        )
        self.queue_depth = self.gauge(
            "tandem_queue_items", "Items waiting to be batched", ["model"]
        )
        self.batch_size = self.histogram(
            "tandem_batch_size", "Items per forward pass", ["model"], BATCH_SIZE_BUCKETS
        )
        self.batch_tokens = self.histogram(
            "tandem_batch_tokens", "Padded tokens per forward pass", ["model"], TOKEN_BUCKETS
        )
        self.inference_seconds = self.histogram(
            "tandem_inference_seconds", "Forward pass time", ["model"], LATENCY_BUCKETS
        )
        self.yield_seconds = self.counter(
            "tandem_query_yield_seconds",
            "Indexing role: time spent waiting for the inference role's queries",
        )
        self.items = self.counter("tandem_items_total", "Texts or pairs processed", ["model"])

    def observe_batch(self, model: str, *, size: int, tokens: int, seconds: float) -> None:
        self.batch_size.labels(model).observe(size)
        self.batch_tokens.labels(model).observe(tokens)
        self.inference_seconds.labels(model).observe(seconds)
        self.items.labels(model).inc(size)
