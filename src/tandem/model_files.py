"""The prepared-model layout in the model cache and the vector array type: shared by
`prepare`, the model server, its clients, the workers and the launcher, so none of them
imports the model server (and ONNX Runtime) for it.

``<cache>/<name>/`` holds ``model.onnx`` (fp32), ``model.int8.onnx`` (int8, dynamic
per-channel; embedding models only), ``tokenizer.json`` and ``manifest.json``. The server
reads only this directory: it never touches a hub or the packaged weights.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path

import numpy as np
import numpy.typing as npt

from tandem.precision import Precision as Precision

MANIFEST_FILE = "manifest.json"
MODEL_FILE = "model.onnx"
INT8_MODEL_FILE = "model.int8.onnx"
TOKENIZER_FILE = "tokenizer.json"
FORMAT_VERSION = 1

# Vectors and scores as the model server computes them and its clients receive them.
FloatArray = npt.NDArray[np.float32]


def model_file(precision: Precision) -> str:
    return INT8_MODEL_FILE if precision is Precision.INT8 else MODEL_FILE


class ModelKind(StrEnum):
    BI_ENCODER = "bi-encoder"
    CROSS_ENCODER = "cross-encoder"


class ModelNotPrepared(RuntimeError):
    """Raised at start-up when the cache lacks a model; the message names the fix."""


@dataclass(frozen=True, slots=True)
class ModelManifest:
    name: str
    kind: ModelKind
    dimensions: int  # embedding size; 1 for a cross-encoder's single logit
    max_seq_length: int
    source: str
    # The precisions prepared in this directory, each in its own file (`model_file`).
    precisions: tuple[Precision, ...]
    format_version: int = FORMAT_VERSION

    def write(self, directory: Path) -> None:
        payload = asdict(self) | {
            "kind": self.kind.value,
            "precisions": [p.value for p in self.precisions],
        }
        # Write then rename: a server or worker reading the manifest never sees half of it.
        staging = directory / f".{MANIFEST_FILE}.tmp"
        staging.write_text(json.dumps(payload, indent=2) + "\n")
        staging.replace(directory / MANIFEST_FILE)

    @classmethod
    def read(cls, directory: Path) -> ModelManifest:
        raw = json.loads((directory / MANIFEST_FILE).read_text())
        return cls(
            name=str(raw["name"]),
            kind=ModelKind(raw["kind"]),
            dimensions=int(raw["dimensions"]),
            max_seq_length=int(raw["max_seq_length"]),
            source=str(raw["source"]),
            # Manifests written before int8 existed name a single "precision".
            precisions=tuple(
                Precision(p) for p in raw.get("precisions", [raw.get("precision", "fp32")])
            ),
            format_version=int(raw["format_version"]),
        )


def model_dir(cache: Path, name: str) -> Path:
    return cache / name


def locate_prepared(
    cache: Path,
    name: str,
    kind: ModelKind,
    *,
    need_weights: bool = True,
    precision: Precision = Precision.FP32,
) -> tuple[Path, ModelManifest]:
    """Find a prepared model (with the weights of ``precision``) or fail with the command
    that prepares it.

    Workers chunk with the model's tokenizer but never run it: they pass
    ``need_weights=False`` and need only the manifest and tokenizer in their image.
    """
    directory = model_dir(cache, name)
    command = (
        "tandem models prepare"
        if kind is ModelKind.BI_ENCODER
        else "tandem models prepare-reranker --from <dir>"
    )
    needed = (MANIFEST_FILE, TOKENIZER_FILE) + ((model_file(precision),) if need_weights else ())
    missing = [f for f in needed if not (directory / f).is_file()]
    if missing:
        # A model prepared before int8 existed lacks only model.int8.onnx: prepare adds it.
        raise ModelNotPrepared(
            f"{kind.value} model {name!r} is not prepared in {directory} "
            f"(missing {', '.join(missing)}); run `{command}` "
            "with the same TANDEM_MODEL_CACHE first"
        )
    manifest = ModelManifest.read(directory)
    if manifest.kind is not kind:
        raise ModelNotPrepared(f"{directory} holds a {manifest.kind.value}, not a {kind.value}")
    if manifest.format_version != FORMAT_VERSION:
        raise ModelNotPrepared(
            f"{directory} was prepared by another Tandem version; run `{command}` again"
        )
    return directory, manifest
