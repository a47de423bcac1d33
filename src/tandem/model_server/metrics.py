"""Prometheus metrics, one registry per app instance (no process-global state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1, 2, 4, 8)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
TOKEN_BUCKETS = (16, 64, 256, 1024, 4096, 16384, 65536)


class ModelServerMetrics:
    def __init__(self, role: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.info = Gauge(
            "tandem_model_server_info",
            "Role of this model server",
            ["role"],
            registry=self.registry,
        )
        self.info.labels(role).set(1)
        self.requests = Counter(
            "tandem_requests_total",
            "HTTP requests by endpoint and status",
            ["endpoint", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "tandem_request_seconds",
            "HTTP request latency",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "tandem_queue_items", "Items waiting to be batched", ["model"], registry=self.registry
        )
        self.batch_size = Histogram(
            "tandem_batch_size",
            "Items per forward pass",
            ["model"],
            buckets=BATCH_SIZE_BUCKETS,
            registry=self.registry,
        )
        self.batch_tokens = Histogram(
            "tandem_batch_tokens",
            "Padded tokens per forward pass",
            ["model"],
            buckets=TOKEN_BUCKETS,
            registry=self.registry,
        )
        self.inference_seconds = Histogram(
            "tandem_inference_seconds",
            "Forward pass time",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.yield_seconds = Counter(
            "tandem_query_yield_seconds",
            "Indexing role: time spent waiting for the inference role's queries",
            registry=self.registry,
        )
        self.items = Counter(
            "tandem_items_total", "Texts or pairs processed", ["model"], registry=self.registry
        )

    def observe_batch(self, model: str, *, size: int, tokens: int, seconds: float) -> None:
        self.batch_size.labels(model).observe(size)
        self.batch_tokens.labels(model).observe(tokens)
        self.inference_seconds.labels(model).observe(seconds)
        self.items.labels(model).inc(size)

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))
