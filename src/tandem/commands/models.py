"""`tandem model-server` and `tandem models …`: serve and prepare models."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tandem.commands.common import build_settings, console, fail
from tandem.config import ModelCacheSettings, ModelServerSettings, Role
from tandem.logs import configure_logging

models_app = typer.Typer(help="Prepare and list models in the model cache.", no_args_is_help=True)


def model_server(
    role: Annotated[
        Role | None, typer.Option(help="Overrides INDEXING_ONLY from the environment.")
    ] = None,
    host: Annotated[str | None, typer.Option(help="Bind address (TANDEM_BIND_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port; default by role: 9000 / 9001.")] = None,
    cpus: Annotated[str | None, typer.Option(help='Pin to CPUs, e.g. "0" or "2-3".')] = None,
) -> None:
    """Run a model server: inference (queries, rerank) or indexing (bulk passages)."""
    from tandem.model_files import ModelNotPrepared
    from tandem.model_server.server import serve

    configure_logging("model-server")
    overrides: dict[str, object] = {"bind_host": host, "cpus": cpus}
    if role is not None:
        overrides["indexing_only"] = role is Role.INDEXING
    settings = build_settings(ModelServerSettings, **overrides)
    if port is not None:
        key = "indexing_port" if settings.role is Role.INDEXING else "inference_port"
        settings = build_settings(ModelServerSettings, **overrides, **{key: port})
    try:
        serve(settings)
    except ModelNotPrepared as exc:
        raise fail(str(exc)) from exc


@models_app.command("prepare")
def models_prepare(
    model: Annotated[str | None, typer.Option(help="Model name (TANDEM_EMBEDDING_MODEL).")] = None,
    source: Annotated[
        Path | None,
        typer.Option(
            "--from", help="A local sentence-transformers directory instead of a package."
        ),
    ] = None,
    force: Annotated[bool, typer.Option(help="Prepare again even if present.")] = False,
) -> None:
    """Convert the embedding model's packaged weights into ONNX (fp32 and int8) in the model
    cache (offline)."""
    from tandem.model_server.prepare import (
        PrepareError,
        ensure_embedding_model,
        prepare_embedding_model,
    )

    settings = build_settings(ModelCacheSettings, embedding_model=model)
    name = settings.embedding_model
    with console.status(f"preparing {name} (export + optimize + quantize)"):
        try:
            if force:
                directory = prepare_embedding_model(settings.model_cache, name, source)
                done = "prepared"
            else:
                directory, done = ensure_embedding_model(settings.model_cache, name, source)
        except (PrepareError, ImportError) as exc:
            raise fail(str(exc)) from exc
    console.print(f"{done} {name} in {directory} (fp32 and int8)")


@models_app.command("prepare-reranker")
def models_prepare_reranker(
    source: Annotated[
        Path, typer.Option("--from", help="A local cross-encoder (transformers directory).")
    ],
    name: Annotated[str, typer.Option(help="Name in the cache (TANDEM_RERANK_MODEL).")],
) -> None:
    """Convert a local cross-encoder into ONNX in the model cache."""
    from tandem.model_server.prepare import PrepareError, prepare_reranker

    settings = build_settings(ModelCacheSettings)
    if not source.is_dir():
        raise fail(f"{source} is not a directory")
    with console.status(f"preparing reranker {name}"):
        try:
            directory = prepare_reranker(settings.model_cache, name, source)
        except (PrepareError, ImportError, OSError, ValueError) as exc:
            raise fail(str(exc)) from exc
    console.print(f"prepared {name} in {directory}; set TANDEM_RERANK_MODEL={name}")


@models_app.command("list")
def models_list() -> None:
    """List prepared models."""
    from tandem.model_files import MANIFEST_FILE, ModelManifest

    settings = build_settings(ModelCacheSettings)
    cache = settings.model_cache
    found = sorted(p.parent for p in cache.glob(f"*/{MANIFEST_FILE}")) if cache.is_dir() else []
    if not found:
        console.print(f"no prepared models in {cache}; run `tandem models prepare`")
        return
    for directory in found:
        manifest = ModelManifest.read(directory)
        precisions = ",".join(p.value for p in manifest.precisions)
        typer.echo(
            f"{manifest.name}\t{manifest.kind.value}\tdims={manifest.dimensions}\t"
            f"max_seq={manifest.max_seq_length}\tprecisions={precisions}\t{manifest.source}"
        )
