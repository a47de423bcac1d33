"""The model engine as a library: pre (tokenize) -> core (batched forward) -> post (normalize).

The HTTP app is a thin adapter over `Engines`; benchmarks and tests can drive it directly.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tandem import cpu
from tandem.config import ModelServerSettings, Role
from tandem.model_files import FloatArray, ModelKind, locate_prepared
from tandem.model_server.metrics import ModelServerMetrics
from tandem.model_server.onnx_model import OnnxModel, TokenizedItem, load_model
from tandem.model_server.scheduler import BatchScheduler

log = logging.getLogger(__name__)

# Requests up to this size are tokenized on the event loop: a thread hop costs more.
INLINE_TOKENIZE_CHARS = 2048


class InputTooLong(ValueError):
    """An input exceeds the context length and the client asked not to truncate."""


@dataclass(frozen=True, slots=True)
class Embedded:
    vectors: FloatArray
    token_count: int


def l2_normalize(vectors: FloatArray) -> FloatArray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.asarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)


async def _tokenize(model: OnnxModel, texts: list[str], max_length: int) -> list[TokenizedItem]:
    if sum(map(len, texts)) <= INLINE_TOKENIZE_CHARS:
        return model.tokenize(texts, max_length)
    # Large requests tokenize on a thread while the batcher runs the previous batch.
    return await asyncio.to_thread(model.tokenize, texts, max_length)


class EmbeddingEngine:
    def __init__(self, name: str, model: OnnxModel, scheduler: BatchScheduler) -> None:
        self.name = name
        self.model = model
        self.scheduler = scheduler

    @property
    def dimensions(self) -> int:
        return self.model.manifest.dimensions

    @property
    def max_seq_length(self) -> int:
        return self.model.manifest.max_seq_length

    async def embed(
        self, texts: list[str], max_length: int, *, normalize: bool, truncate: bool = True
    ) -> Embedded:
        limit = min(max_length, self.max_seq_length)
        # Admitted before tokenizing: a request over the queue bound costs no tokenizer time
        # or memory, however large it is.
        with self.scheduler.reserve(len(texts)) as reservation:
            items = await _tokenize(self.model, texts, limit)
            if not truncate:
                too_long = [i for i, item in enumerate(items) if item.truncated]
                if too_long:
                    raise InputTooLong(
                        f"{len(too_long)} input(s) exceed {limit} tokens "
                        f"(first: index {too_long[0]})"
                    )
            vectors = await reservation.submit(items)
        return Embedded(
            vectors=l2_normalize(vectors) if normalize else vectors,
            token_count=sum(len(item) for item in items),
        )


class RerankEngine:
    def __init__(self, name: str, model: OnnxModel, scheduler: BatchScheduler) -> None:
        self.name = name
        self.model = model
        self.scheduler = scheduler

    async def score(self, query: str, documents: list[str], *, truncate: bool = True) -> FloatArray:
        """Raw relevance logits, one per document, in input order."""
        with self.scheduler.reserve(len(documents)) as reservation:  # before tokenizing
            if len(documents) > 8:
                items = await asyncio.to_thread(self.model.tokenize_pairs, query, documents)
            else:
                items = self.model.tokenize_pairs(query, documents)
            if not truncate:
                too_long = [i for i, item in enumerate(items) if item.truncated]
                if too_long:
                    raise InputTooLong(
                        f"{len(too_long)} query/document pair(s) exceed "
                        f"{self.model.manifest.max_seq_length} tokens "
                        f"(first: index {too_long[0]})"
                    )
            logits = await reservation.submit(items)
        return np.asarray(logits[:, 0], dtype=np.float32)


@dataclass
class Engines:
    role: Role
    threads: int
    embedding: EmbeddingEngine
    rerank: RerankEngine | None

    def start(self) -> None:
        self.embedding.scheduler.start()
        if self.rerank is not None:
            self.rerank.scheduler.start()

    def stop(self, timeout: float) -> None:
        self.embedding.scheduler.stop(timeout)
        if self.rerank is not None:
            self.rerank.scheduler.stop(timeout)

    async def warm_up(self) -> None:
        """Run real batches so the first user request pays no lazy-initialization cost."""
        await self.embedding.embed(["warm up the query path"], 32, normalize=True)
        if self.role is Role.INDEXING:
            long_text = " ".join(["passage"] * self.embedding.max_seq_length)
            await self.embedding.embed(
                [long_text] * 8, self.embedding.max_seq_length, normalize=True
            )
        if self.rerank is not None:
            await self.rerank.score("warm up", ["the rerank path"])


def _serialized(
    run: Callable[[list[TokenizedItem]], FloatArray], lock: threading.Lock
) -> Callable[[list[TokenizedItem]], FloatArray]:
    def locked(items: list[TokenizedItem]) -> FloatArray:
        with lock:
            return run(items)

    return locked


def load_engines(settings: ModelServerSettings, metrics: ModelServerMetrics) -> Engines:
    """Load the models this role serves. Slow (seconds): call it off the event loop."""
    threads = settings.threads or cpu.role_threads(settings.role is Role.INDEXING)
    # Spinning buys a query latency; the indexing role must not burn CPUs it yields.
    spinning = settings.role is Role.INFERENCE
    limits = settings.scheduling()
    # Both models size their thread pools to all usable CPUs, so one forward pass at a time.
    compute = threading.Lock()
    directory, manifest = locate_prepared(
        settings.model_cache,
        settings.embedding_model,
        ModelKind.BI_ENCODER,
        precision=settings.precision,
    )
    model = load_model(
        directory, manifest, threads, spinning=spinning, precision=settings.precision
    )
    embedding = EmbeddingEngine(
        manifest.name,
        model,
        BatchScheduler(_serialized(model.run, compute), limits, metrics, manifest.name),
    )
    rerank = None
    # Reranking serves queries: the indexing role never loads the cross-encoder. It runs
    # fp32 whatever TANDEM_PRECISION says: int8's effect on reranking is not measured.
    if settings.role is Role.INFERENCE and settings.rerank_model:
        directory, manifest = locate_prepared(
            settings.model_cache, settings.rerank_model, ModelKind.CROSS_ENCODER
        )
        model = load_model(directory, manifest, threads, spinning=spinning)
        rerank = RerankEngine(
            manifest.name,
            model,
            BatchScheduler(_serialized(model.run, compute), limits, metrics, manifest.name),
        )
    log.info(
        "models_loaded role=%s embedding=%s precision=%s rerank=%s threads=%d",
        settings.role.value,
        embedding.name,
        settings.precision.value,
        rerank.name if rerank else None,
        threads,
    )
    return Engines(role=settings.role, threads=threads, embedding=embedding, rerank=rerank)
