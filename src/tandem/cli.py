"""The `tandem` command: thin adapters over the library; settings are built here."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console

from tandem.commands import data, servers
from tandem.commands.common import build_settings
from tandem.config import ModelCacheSettings, ModelServerSettings, Role
from tandem.logs import configure_logging

app = typer.Typer(help="Tandem: self-hosted document search.", no_args_is_help=True)
models_app = typer.Typer(help="Prepare and list models in the model cache.", no_args_is_help=True)
app.add_typer(models_app, name="models")
# Internal: what `tandem up` runs as its database and broker processes.
services_app = typer.Typer(help="Run a local server in the foreground.", no_args_is_help=True)
app.add_typer(services_app, name="services", hidden=True)
console = Console(stderr=True)


class RoleChoice(StrEnum):
    inference = "inference"
    indexing = "indexing"


def _fail(message: str, code: int = 2) -> typer.Exit:
    console.print(f"[red]error:[/red] {message}")
    return typer.Exit(code)


SettingsT = TypeVar("SettingsT", bound=ModelCacheSettings)


def _settings(cls: type[SettingsT], **overrides: object) -> SettingsT:
    given: dict[str, Any] = {k: v for k, v in overrides.items() if v is not None}
    try:
        return cls(**given)
    except ValidationError as exc:
        raise _fail(f"invalid settings:\n{exc}") from exc


@app.command("model-server")
def model_server(
    role: Annotated[
        RoleChoice | None, typer.Option(help="Overrides INDEXING_ONLY from the environment.")
    ] = None,
    host: Annotated[str | None, typer.Option(help="Bind address (TANDEM_BIND_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port; default by role: 9000 / 9001.")] = None,
    cpus: Annotated[str | None, typer.Option(help='Pin to CPUs, e.g. "0" or "2-3".')] = None,
) -> None:
    """Run a model server: inference (queries, rerank) or indexing (bulk passages)."""
    from tandem.model_server.manifest import ModelNotPrepared
    from tandem.model_server.server import serve

    configure_logging("model-server")
    overrides: dict[str, object] = {"bind_host": host, "cpus": cpus}
    if role is not None:
        overrides["indexing_only"] = role is RoleChoice.indexing
    settings = _settings(ModelServerSettings, **overrides)
    if port is not None:
        key = "indexing_port" if settings.role is Role.INDEXING else "inference_port"
        settings = _settings(ModelServerSettings, **overrides, **{key: port})
    try:
        serve(settings)
    except ModelNotPrepared as exc:
        raise _fail(str(exc)) from exc


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
    """Convert the embedding model's packaged weights into ONNX in the model cache (offline)."""
    from tandem.model_server.manifest import ModelKind, ModelNotPrepared, locate_prepared
    from tandem.model_server.prepare import PrepareError, prepare_embedding_model

    settings = _settings(ModelCacheSettings, embedding_model=model)
    name = settings.embedding_model
    if not force:
        try:
            directory, _ = locate_prepared(settings.model_cache, name, ModelKind.BI_ENCODER)
        except ModelNotPrepared:
            pass
        else:
            console.print(f"{name} is already prepared in {directory}")
            return
    with console.status(f"preparing {name} (export + optimize)"):
        try:
            directory = prepare_embedding_model(settings.model_cache, name, source)
        except (PrepareError, ImportError) as exc:
            raise _fail(str(exc)) from exc
    console.print(f"prepared {name} in {directory}")


@models_app.command("prepare-reranker")
def models_prepare_reranker(
    source: Annotated[
        Path, typer.Option("--from", help="A local cross-encoder (transformers directory).")
    ],
    name: Annotated[str, typer.Option(help="Name in the cache (TANDEM_RERANK_MODEL).")],
) -> None:
    """Convert a local cross-encoder into ONNX in the model cache."""
    from tandem.model_server.prepare import PrepareError, prepare_reranker

    settings = _settings(ModelCacheSettings)
    if not source.is_dir():
        raise _fail(f"{source} is not a directory")
    with console.status(f"preparing reranker {name}"):
        try:
            directory = prepare_reranker(settings.model_cache, name, source)
        except (PrepareError, ImportError, OSError, ValueError) as exc:
            raise _fail(str(exc)) from exc
    console.print(f"prepared {name} in {directory}; set TANDEM_RERANK_MODEL={name}")


@models_app.command("list")
def models_list() -> None:
    """List prepared models."""
    from tandem.model_server.manifest import MANIFEST_FILE, ModelManifest

    settings = _settings(ModelCacheSettings)
    cache = settings.model_cache
    found = sorted(p.parent for p in cache.glob(f"*/{MANIFEST_FILE}")) if cache.is_dir() else []
    if not found:
        console.print(f"no prepared models in {cache}; run `tandem models prepare`")
        return
    for directory in found:
        manifest = ModelManifest.read(directory)
        typer.echo(
            f"{manifest.name}\t{manifest.kind.value}\tdims={manifest.dimensions}\t"
            f"max_seq={manifest.max_seq_length}\t{manifest.source}"
        )


@app.command("up")
def up(
    ready_timeout: Annotated[float, typer.Option(help="Seconds to wait for each service.")] = 120.0,
    api_port: Annotated[int, typer.Option(help="API server port.")] = 8080,
    web_port: Annotated[int, typer.Option(help="Web server (browser UI) port.")] = 3000,
    postgres_port: Annotated[int, typer.Option(help="Local PostgreSQL port.")] = 5433,
    redis_port: Annotated[int, typer.Option(help="Local Redis port.")] = 6380,
) -> None:
    """Start the whole stack on this machine in the foreground; Ctrl-C stops all of it."""
    from tandem.config import StorageSettings
    from tandem.launcher import run_stack
    from tandem.stack import LocalPorts, local_stack_specs

    configure_logging("up")
    specs, banner = local_stack_specs(
        _settings(ModelServerSettings),
        build_settings(StorageSettings),
        LocalPorts(api=api_port, web=web_port, postgres=postgres_port, redis=redis_port),
    )
    raise typer.Exit(run_stack(specs, ready_timeout, banner))


app.command("api")(servers.api)
app.command("worker")(servers.worker)
app.command("web")(servers.web)
app.command("ingest")(data.ingest)
app.command("search")(data.search)
app.add_typer(data.api_key_app, name="api-key")
app.add_typer(data.db_app, name="db")


DataDirOption = Annotated[Path, typer.Option(help="The server's data directory.")]
PortOption = Annotated[int, typer.Option(min=1, max=65535, help="Port on 127.0.0.1.")]


@services_app.command("postgres")
def services_postgres(data_dir: DataDirOption, port: PortOption) -> None:
    """Create the cluster and database if missing, then become the PostgreSQL server."""
    from tandem.services.postgres import LocalPostgres
    from tandem.services.process import ServiceError

    configure_logging("postgres")
    server = LocalPostgres(data_dir, port)
    try:
        server.prepare()
        server.exec_server()
    except (ServiceError, OSError) as exc:
        raise _fail(f"postgres: {exc}", code=1) from exc


@services_app.command("redis")
def services_redis(data_dir: DataDirOption, port: PortOption) -> None:
    """Become a Redis server persisting to an append-only file in the data directory."""
    from tandem.services.process import ServiceError
    from tandem.services.redis import LocalRedis

    configure_logging("redis")
    server = LocalRedis(data_dir, port)
    try:
        server.prepare()
        server.exec_server()
    except (ServiceError, OSError) as exc:
        raise _fail(f"redis: {exc}", code=1) from exc


def main() -> None:
    app()


if __name__ == "__main__":
    main()
