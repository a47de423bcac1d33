"""The prepared-model layout in the model cache, shared by `prepare` and the server.

``<cache>/<name>/`` holds ``model.onnx``, ``tokenizer.json`` and ``manifest.json``. The
server reads only this directory: it never touches a hub or the packaged weights.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path

MANIFEST_FILE = "manifest.json"
MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
FORMAT_VERSION = 1


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
    precision: str
    format_version: int = FORMAT_VERSION

    def write(self, directory: Path) -> None:
        payload = asdict(self) | {"kind": self.kind.value}
        (directory / MANIFEST_FILE).write_text(json.dumps(payload, indent=2) + "\n")

    @classmethod
    def read(cls, directory: Path) -> ModelManifest:
        raw = json.loads((directory / MANIFEST_FILE).read_text())
        return cls(
            name=str(raw["name"]),
            kind=ModelKind(raw["kind"]),
            dimensions=int(raw["dimensions"]),
            max_seq_length=int(raw["max_seq_length"]),
            source=str(raw["source"]),
            precision=str(raw["precision"]),
            format_version=int(raw["format_version"]),
        )


def model_dir(cache: Path, name: str) -> Path:
    return cache / name


def locate_prepared(
    cache: Path, name: str, kind: ModelKind, *, need_weights: bool = True
) -> tuple[Path, ModelManifest]:
    """Find a prepared model or fail with the command that prepares it.

    Workers chunk with the model's tokenizer but never run it: they pass
    ``need_weights=False`` and need only the manifest and tokenizer in their image.
    """
    directory = model_dir(cache, name)
    command = (
        "tandem models prepare"
        if kind is ModelKind.BI_ENCODER
        else "tandem models prepare-reranker --from <dir>"
    )
    needed = (MANIFEST_FILE, TOKENIZER_FILE) + ((MODEL_FILE,) if need_weights else ())
    missing = [f for f in needed if not (directory / f).is_file()]
    if missing:
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
