"""The model engine as a library: pre (tokenize) -> core (batched forward) -> post (normalize).

The HTTP app is a thin adapter over `Engines`; benchmarks and tests can drive it directly.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from tandem import cpu
from tandem.config import ModelServerSettings, Role
from tandem.model_files import FloatArray, ModelKind, locate_prepared
from tandem.model_server.metrics import ModelServerMetrics
from tandem.model_server.onnx_model import OnnxModel, TokenizedItem, load_model
from tandem.model_server.query_signal import (
    NoSignal,
    QueryActivity,
    QuerySignal,
    QueryWatch,
    QuietWait,
)
from tandem.model_server.scheduler import BatchScheduler

log = logging.getLogger(__name__)

# Requests up to this size are tokenized on the event loop: a thread hop costs more.
INLINE_TOKENIZE_CHARS = 2048
# With a query signal, the indexing role's sub-batches: ~4 passages of 256 tokens, tens of
# milliseconds on 2 threads (one batch of 64 takes about a second), with the same
# passages per CPU-second as whole batches (measured in-process).
SUB_BATCH_TOKENS = 1024
# It waits while queries are in flight or ended less than QUIET_SECONDS ago (a client's
# next query of a burst), at most MAX_WAIT_SECONDS before each sub-batch.
QUIET_SECONDS = 0.02
MAX_WAIT_SECONDS = 0.25


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


def _refuse_truncated(items: list[TokenizedItem], what: str, limit: int) -> None:
    """InputTooLong when any item was cut at `limit` tokens (the client said not to)."""
    too_long = [i for i, item in enumerate(items) if item.truncated]
    if too_long:
        raise InputTooLong(
            f"{len(too_long)} {what} exceed {limit} tokens (first: index {too_long[0]})"
        )


class ModelEngine:
    """One loaded model behind its batch scheduler. Each request is announced on
    `activity` while it runs: the inference role's queries make the indexing role wait."""

    def __init__(
        self,
        name: str,
        model: OnnxModel,
        scheduler: BatchScheduler,
        activity: QueryActivity | None = None,
    ) -> None:
        self.name = name
        self.model = model
        self.scheduler = scheduler
        self.activity = activity or NoSignal()

    @property
    def max_seq_length(self) -> int:
        return self.model.manifest.max_seq_length

    @contextmanager
    def _announced(self) -> Iterator[None]:
        self.activity.begin()
        try:
            yield
        finally:
            self.activity.end()


class EmbeddingEngine(ModelEngine):
    @property
    def dimensions(self) -> int:
        return self.model.manifest.dimensions

    async def embed(
        self, texts: list[str], max_length: int, *, normalize: bool, truncate: bool = True
    ) -> Embedded:
        limit = min(max_length, self.max_seq_length)
        with self._announced():
            return await self._embed(texts, limit, normalize=normalize, truncate=truncate)

    async def _embed(
        self, texts: list[str], limit: int, *, normalize: bool, truncate: bool
    ) -> Embedded:
        # Admitted before tokenizing: a request over the queue bound costs no tokenizer time
        # or memory, however large it is.
        with self.scheduler.reserve(len(texts)) as reservation:
            items = await _tokenize(self.model, texts, limit)
            if not truncate:
                _refuse_truncated(items, "input(s)", limit)
            vectors = await reservation.submit(items)
        return Embedded(
            vectors=l2_normalize(vectors) if normalize else vectors,
            token_count=sum(len(item) for item in items),
        )


class RerankEngine(ModelEngine):
    async def score(self, query: str, documents: list[str], *, truncate: bool = True) -> FloatArray:
        """Raw relevance logits, one per document, in input order."""
        with self._announced():
            return await self._score(query, documents, truncate=truncate)

    async def _score(self, query: str, documents: list[str], *, truncate: bool) -> FloatArray:
        with self.scheduler.reserve(len(documents)) as reservation:  # before tokenizing
            if len(documents) > 8:
                items = await asyncio.to_thread(self.model.tokenize_pairs, query, documents)
            else:
                items = self.model.tokenize_pairs(query, documents)
            if not truncate:
                _refuse_truncated(items, "query/document pair(s)", self.max_seq_length)
            logits = await reservation.submit(items)
        return np.asarray(logits[:, 0], dtype=np.float32)


@dataclass
class Engines:
    role: Role
    threads: int
    embedding: EmbeddingEngine
    rerank: RerankEngine | None
    signal: QueryActivity | QuietWait

    def start(self) -> None:
        self.embedding.scheduler.start()
        if self.rerank is not None:
            self.rerank.scheduler.start()

    def stop(self, timeout: float) -> None:
        self.embedding.scheduler.stop(timeout)
        if self.rerank is not None:
            self.rerank.scheduler.stop(timeout)
        self.signal.close()

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


def sub_batches(items: list[TokenizedItem], max_tokens: int) -> list[list[TokenizedItem]]:
    """Consecutive runs of ``items`` of at most ``max_tokens`` padded tokens (at least one
    item each). The throughput policy sorts a batch longest first, so padding stays low."""
    runs: list[list[TokenizedItem]] = []
    current: list[TokenizedItem] = []
    longest = 0
    for item in items:
        wider = max(longest, len(item))
        if current and (len(current) + 1) * wider > max_tokens:
            runs.append(current)
            current, wider = [], len(item)
        current.append(item)
        longest = wider
    if current:
        runs.append(current)
    return runs


def yielding(
    run: Callable[[list[TokenizedItem]], FloatArray],
    watch: QuietWait,
    metrics: ModelServerMetrics,
    max_tokens: int = SUB_BATCH_TOKENS,
) -> Callable[[list[TokenizedItem]], FloatArray]:
    """The indexing role's forward pass beside a query signal: short sub-batches, each
    after the inference role's queries are done."""

    def run_yielding(items: list[TokenizedItem]) -> FloatArray:
        outputs = []
        for part in sub_batches(items, max_tokens):
            waited = watch.wait_quiet()
            if waited:
                metrics.yield_seconds.inc(waited)
            outputs.append(run(part))
        return np.concatenate(outputs)

    return run_yielding


def _signal(settings: ModelServerSettings) -> tuple[QueryActivity, QuietWait | None]:
    """(what the inference role announces through, what the indexing role waits on)."""
    path = settings.query_signal_file
    if path is None:
        return NoSignal(), None
    if settings.role is Role.INFERENCE:
        return QuerySignal(path), None
    return NoSignal(), QueryWatch(path, quiet=QUIET_SECONDS, max_wait=MAX_WAIT_SECONDS)


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
    activity, watch = _signal(settings)
    run = model.run if watch is None else yielding(model.run, watch, metrics)
    embedding = EmbeddingEngine(
        manifest.name,
        model,
        BatchScheduler(run, limits, metrics, manifest.name, compute=compute),
        activity,
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
            BatchScheduler(model.run, limits, metrics, manifest.name, compute=compute),
            activity,
        )
    log.info(
        "models_loaded role=%s embedding=%s precision=%s rerank=%s threads=%d query_signal=%s",
        settings.role.value,
        embedding.name,
        settings.precision.value,
        rerank.name if rerank else None,
        threads,
        "off" if settings.query_signal_file is None else ("wait" if watch else "announce"),
    )
    return Engines(
        role=settings.role,
        threads=threads,
        embedding=embedding,
        rerank=rerank,
        signal=activity if watch is None else watch,
    )
