"""The one-host query signal: the indexing role pauses its sub-batches while the inference
role has queries in flight, and nothing changes without the signal file."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from tandem.config import ModelServerSettings
from tandem.local.stack import QUERY_SIGNAL_VARIABLE, model_server_specs
from tandem.model_files import FloatArray, ModelKind, Precision, locate_prepared
from tandem.model_server.engine import load_engines, sub_batches, yielding
from tandem.model_server.metrics import ModelServerMetrics
from tandem.model_server.onnx_model import OnnxModel, TokenizedItem, load_model
from tandem.model_server.query_signal import LAYOUT, QuerySignal, QueryWatch

PASSAGE = " ".join(["The indexing role embeds long passages of documentation."] * 30)


@pytest.fixture(scope="module")
def int8_model(model_cache: Path) -> OnnxModel:
    directory, manifest = locate_prepared(
        model_cache, "all-MiniLM-L6-v2", ModelKind.BI_ENCODER, precision=Precision.INT8
    )
    return load_model(directory, manifest, threads=2, spinning=False, precision=Precision.INT8)


def test_a_missing_file_never_waits(tmp_path: Path) -> None:
    watch = QueryWatch(tmp_path / "absent", quiet=1.0, max_wait=5.0)
    started = time.monotonic()
    assert watch.wait_quiet() == 0.0
    assert not watch.busy()
    assert time.monotonic() - started < 0.1


def test_queries_in_flight_then_a_quiet_window(tmp_path: Path) -> None:
    path = tmp_path / "run" / "queries"
    signal = QuerySignal(path)  # makes the run dir
    watch = QueryWatch(path, quiet=0.05, max_wait=0.2)
    assert watch.busy()  # the writer just started: the quiet window has not passed
    time.sleep(0.06)
    assert not watch.busy()
    signal.begin()
    signal.begin()
    signal.end()
    assert watch.busy()  # one query is still in flight
    assert 0.2 <= watch.wait_quiet() < 1.0  # waited up to max_wait, no longer
    signal.end()
    assert watch.busy()  # ended less than `quiet` ago
    time.sleep(0.06)
    assert not watch.busy() and watch.wait_quiet() == 0.0
    signal.close()


def test_a_count_left_by_a_dead_writer_is_not_believed(tmp_path: Path) -> None:
    path = tmp_path / "queries"
    signal = QuerySignal(path)
    signal.begin()
    signal.close()  # a clean close clears the count
    watch = QueryWatch(path, quiet=0.0, max_wait=5.0)
    assert not watch.busy()
    with path.open("r+b") as file:  # a writer killed mid-query, 3 s ago
        file.write(LAYOUT.pack(1, time.monotonic_ns() - 3_000_000_000))
    assert not watch.busy()
    assert watch.wait_quiet() == 0.0


def test_sub_batches_bound_padded_tokens() -> None:
    lengths = (256, 250, 200, 120, 10)  # longest first, as the throughput policy sorts
    items = [TokenizedItem(ids=np.zeros(n, dtype=np.int64)) for n in lengths]
    runs = sub_batches(items, 512)
    assert [[len(i) for i in run] for run in runs] == [[256, 250], [200, 120], [10]]
    assert all(len(run) * max(map(len, run)) <= 512 for run in runs)
    assert [len(run) for run in sub_batches(items[:1], 100)] == [1]  # one item always runs


def test_indexing_sub_batches_pause_while_a_query_is_held_and_resume(
    int8_model: OnnxModel, tmp_path: Path
) -> None:
    path = tmp_path / "queries"
    signal = QuerySignal(path)
    items = int8_model.tokenize([PASSAGE] * 8, 256)
    calls: list[int] = []

    def run(part: list[TokenizedItem]) -> FloatArray:
        calls.append(len(part))
        return int8_model.run(part)

    metrics = ModelServerMetrics("indexing")
    watch = QueryWatch(path, quiet=0.02, max_wait=30.0)
    runner = yielding(run, watch, metrics, max_tokens=512)
    output: list[FloatArray] = []
    signal.begin()  # a query in flight
    thread = threading.Thread(target=lambda: output.append(runner(items)))
    thread.start()
    thread.join(1.0)
    assert thread.is_alive() and calls == []  # paused before its first sub-batch
    signal.end()
    thread.join(60.0)
    assert not thread.is_alive()
    assert calls == [2, 2, 2, 2]
    assert metrics.yield_seconds._value.get() >= 1.0
    np.testing.assert_allclose(output[0], int8_model.run(items), atol=1e-4)
    signal.close()


def _indexing_settings(model_cache: Path, signal_file: Path | None) -> ModelServerSettings:
    return ModelServerSettings(
        INDEXING_ONLY="true",
        TANDEM_MODEL_CACHE=str(model_cache),
        TANDEM_QUERY_SIGNAL_FILE=str(signal_file) if signal_file else "",
    )


@pytest.mark.parametrize("with_signal_file", [True, False])
def test_the_indexing_engine_waits_only_with_the_signal_file(
    model_cache: Path, tmp_path: Path, with_signal_file: bool
) -> None:
    path = tmp_path / "queries"
    signal = QuerySignal(path)  # the inference role announces a query either way
    signal.begin()
    metrics = ModelServerMetrics("indexing")
    engines = load_engines(
        _indexing_settings(model_cache, path if with_signal_file else None), metrics
    )
    engines.start()
    try:
        started = time.monotonic()
        result = asyncio.run(engines.embedding.embed([PASSAGE] * 8, 256, normalize=True))
        elapsed = time.monotonic() - started
    finally:
        engines.stop(10)
        signal.close()
    assert result.vectors.shape == (8, 384)
    yielded = metrics.yield_seconds._value.get()
    if with_signal_file:
        # 8 passages of 256 tokens are 2 sub-batches, each after waiting the 0.25 s bound.
        assert yielded >= 0.45 and elapsed >= 0.45
    else:
        assert yielded == 0.0


def test_signal_setting_is_validated_and_wired_by_tandem_up(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="absolute"):
        ModelServerSettings(TANDEM_QUERY_SIGNAL_FILE="relative/queries")
    with pytest.raises(ValidationError, match="directory"):
        ModelServerSettings(TANDEM_QUERY_SIGNAL_FILE=str(tmp_path))
    assert ModelServerSettings(TANDEM_QUERY_SIGNAL_FILE="").query_signal_file is None
    specs, _ = model_server_specs(ModelServerSettings(), run_dir=tmp_path)
    files = {spec.env[QUERY_SIGNAL_VARIABLE] for spec in specs}
    assert len(specs) == 2 and len(files) == 1  # both roles, one file
    assert Path(files.pop()).parent == tmp_path
    specs, _ = model_server_specs(ModelServerSettings())  # roles on different hosts
    assert all(QUERY_SIGNAL_VARIABLE not in spec.env for spec in specs)
