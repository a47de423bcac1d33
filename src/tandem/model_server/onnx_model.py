"""ONNX Runtime sessions for prepared models: tokenization, padding and the forward pass.

Pre (tokenize, truncate) and core (pad + run) are separate so the scheduler can tokenize
a request on the event loop or a thread while the previous batch runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from tokenizers import Tokenizer

from tandem.model_files import (
    TOKENIZER_FILE,
    FloatArray,
    ModelKind,
    ModelManifest,
    Precision,
    model_file,
)

Int64Array = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class TokenizedItem:
    ids: Int64Array
    type_ids: Int64Array | None = None  # only pairs (cross-encoder) need segment ids
    truncated: bool = False

    def __len__(self) -> int:
        return int(self.ids.shape[0])


def session_options(threads: int, *, spinning: bool) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Spinning buys latency for the query role; the bulk role must not burn idle cores.
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return options


class OnnxModel:
    """A prepared bi-encoder (mean-pooled embedding) or cross-encoder (logits)."""

    def __init__(
        self,
        directory: Path,
        manifest: ModelManifest,
        options: ort.SessionOptions,
        precision: Precision = Precision.FP32,
    ):
        self.manifest = manifest
        self.precision = precision
        self.tokenizer = Tokenizer.from_file(str(directory / TOKENIZER_FILE))
        self.tokenizer.no_padding()
        # Fixed at load (the tokenizer object is shared by threads); requests that ask
        # for a shorter context are cut further in `truncate`.
        self.tokenizer.enable_truncation(max_length=manifest.max_seq_length)
        self.session = ort.InferenceSession(
            str(directory / model_file(precision)),
            sess_options=options,
            providers=["CPUExecutionProvider"],
        )
        self._output = self.session.get_outputs()[0].name
        sep = self.tokenizer.token_to_id("[SEP]")
        self._sep_id = int(sep) if sep is not None else None

    @property
    def kind(self) -> ModelKind:
        return self.manifest.kind

    def tokenize(self, texts: list[str], max_length: int) -> list[TokenizedItem]:
        encodings = self.tokenizer.encode_batch(texts)
        return [
            self._truncate(np.asarray(e.ids, dtype=np.int64), max_length, bool(e.overflowing))
            for e in encodings
        ]

    def tokenize_pairs(self, query: str, documents: list[str]) -> list[TokenizedItem]:
        encodings = self.tokenizer.encode_batch([(query, doc) for doc in documents])
        return [
            TokenizedItem(
                ids=np.asarray(e.ids, dtype=np.int64),
                type_ids=np.asarray(e.type_ids, dtype=np.int64),
                truncated=bool(e.overflowing),
            )
            for e in encodings
        ]

    def _truncate(self, ids: Int64Array, max_length: int, truncated: bool) -> TokenizedItem:
        if ids.shape[0] > max_length >= 2:
            ids = ids[:max_length].copy()
            truncated = True
            if self._sep_id is not None:
                ids[-1] = self._sep_id  # keep the closing [SEP] as the tokenizer would
        return TokenizedItem(ids=ids, truncated=truncated)

    def run(self, items: list[TokenizedItem]) -> FloatArray:
        """Pad to the longest item of this batch (never to a fixed length) and run."""
        longest = max(len(item) for item in items)
        input_ids = np.zeros((len(items), longest), dtype=np.int64)
        attention = np.zeros((len(items), longest), dtype=np.int64)
        token_types = np.zeros((len(items), longest), dtype=np.int64)
        for row, item in enumerate(items):
            n = len(item)
            input_ids[row, :n] = item.ids
            attention[row, :n] = 1
            if item.type_ids is not None:
                token_types[row, :n] = item.type_ids
        outputs = self.session.run(
            [self._output],
            {"input_ids": input_ids, "attention_mask": attention, "token_type_ids": token_types},
        )
        return np.asarray(outputs[0], dtype=np.float32)


def load_model(
    directory: Path,
    manifest: ModelManifest,
    threads: int,
    *,
    spinning: bool,
    precision: Precision = Precision.FP32,
) -> OnnxModel:
    """A session over the prepared model file of ``precision``.

    ONNX Runtime's pool threads inherit the CPU priority and affinity of the thread that
    creates the session: set those (`cpu.apply_priority`, `cpu.pin`) before calling this.
    """
    options = session_options(threads, spinning=spinning)
    return OnnxModel(directory, manifest, options, precision)
