"""Embeddings from the prepared model, in this process, cached on disk by model and text.

A vector is stored under SHA-256(model key + text), where the model key is a digest of
the model file, its tokenizer and its window: a re-run embeds only texts it has not seen,
and a different model (or precision) never reuses another's vectors. New vectors are
appended as one segment file per batch of SEGMENT_SIZE, so an interrupted run keeps what
it had embedded.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt

from tandem.config import ModelCacheSettings
from tandem.model_files import TOKENIZER_FILE, ModelKind, Precision, locate_prepared, model_file
from tandem.model_server.onnx_model import OnnxModel, load_model

Matrix = npt.NDArray[np.float32]
EMBED_BATCH = 32
SEGMENT_SIZE = 2048


def _file_digest(path: Path) -> bytes:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.digest()


class CachedEmbedder:
    def __init__(
        self, cache_dir: Path, threads: int = 2, precision: Precision = Precision.FP32
    ) -> None:
        """fp32 by default (the reference weights); int8 embeds about twice as fast."""
        settings = ModelCacheSettings()
        self.directory, self.manifest = locate_prepared(
            settings.model_cache, settings.embedding_model, ModelKind.BI_ENCODER
        )
        self.precision = precision
        key = hashlib.sha256(
            _file_digest(self.directory / model_file(precision))
            + _file_digest(self.directory / TOKENIZER_FILE)
            + str(self.manifest.max_seq_length).encode()
        ).hexdigest()[:16]
        suffix = "" if precision is Precision.FP32 else f"-{precision.value}"
        self.model_key = f"{self.manifest.name}{suffix}-{key}"
        self._store = cache_dir / "embeddings" / self.model_key
        self._threads = threads
        self._model: OnnxModel | None = None
        self._known: dict[str, npt.NDArray[np.float32]] = {}
        self.embedded = 0  # texts embedded (not found in the cache) by this process
        self.embed_seconds = 0.0
        for segment in sorted(self._store.glob("segment-?????.npz")):
            with np.load(segment) as data:
                for digest, vector in zip(data["keys"], data["vectors"], strict=True):
                    self._known[str(digest)] = vector

    @property
    def dimensions(self) -> int:
        return self.manifest.dimensions

    def _digest(self, text: str) -> str:
        return hashlib.sha256(self.model_key.encode() + b"\0" + text.encode()).hexdigest()

    def _load(self) -> OnnxModel:
        if self._model is None:
            self._model = load_model(
                self.directory,
                self.manifest,
                self._threads,
                spinning=False,
                precision=self.precision,
            )
        return self._model

    def embed(self, texts: list[str], progress: str = "") -> Matrix:
        """Unit vectors for `texts` (one row each), from the cache or the model."""
        digests = [self._digest(t) for t in texts]
        pending = {d: t for d, t in zip(digests, texts, strict=True) if d not in self._known}
        missing = sorted(pending.items())
        started = time.perf_counter()
        for start in range(0, len(missing), SEGMENT_SIZE):
            self._embed_segment(missing[start : start + SEGMENT_SIZE])
            if progress:
                done = min(start + SEGMENT_SIZE, len(missing))
                print(f"  {progress}: embedded {done}/{len(missing)}", flush=True)
        self.embed_seconds += time.perf_counter() - started
        return np.stack([self._known[d] for d in digests]).astype(np.float32)

    def _embed_segment(self, pending: list[tuple[str, str]]) -> None:
        model = self._load()
        items = model.tokenize([t for _, t in pending], self.manifest.max_seq_length)
        order = sorted(range(len(items)), key=lambda i: len(items[i]))  # little padding
        vectors = np.zeros((len(pending), self.dimensions), dtype=np.float32)
        for start in range(0, len(order), EMBED_BATCH):
            rows = order[start : start + EMBED_BATCH]
            vectors[rows] = model.run([items[i] for i in rows])
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        keys = np.array([d for d, _ in pending], dtype="U64")
        self._store.mkdir(parents=True, exist_ok=True)
        number = len(list(self._store.glob("segment-?????.npz")))
        partial = self._store / f"segment-{number:05d}.partial.npz"
        np.savez(partial, keys=keys, vectors=vectors)
        partial.rename(self._store / f"segment-{number:05d}.npz")
        for digest, vector in zip(keys, vectors, strict=True):
            self._known[str(digest)] = vector
        self.embedded += len(pending)
