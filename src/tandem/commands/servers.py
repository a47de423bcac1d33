"""`tandem api`, `tandem worker` and `tandem web`: the processes around the model servers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from tandem.commands.common import build_settings, fail
from tandem.config import ApiSettings, WebSettings, WorkerSettings
from tandem.logs import configure_logging

if TYPE_CHECKING:
    from starlette.types import ASGIApp


def _serve_clients(app: ASGIApp, settings: ApiSettings | WebSettings, drain_seconds: float) -> None:
    """Serve a process browsers and API clients talk to (behind nginx or not)."""
    # uvicorn loads only in the server commands.
    from tandem.http.serving import serve

    serve(
        app,
        host=settings.bind_host,
        port=settings.port,
        drain_seconds=drain_seconds,
        client_facing=True,
    )


def api(
    host: Annotated[str | None, typer.Option(help="Bind address (TANDEM_BIND_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (API_SERVER_PORT, default 8080).")] = None,
    open_access: Annotated[
        bool | None,
        typer.Option("--open-access", help="Serve without API keys (TANDEM_OPEN_ACCESS)."),
    ] = None,
) -> None:
    """Run the API server (uploads, documents, search); it queries the inference server."""
    from tandem.api.app import create_app

    configure_logging("api")
    settings = build_settings(ApiSettings, bind_host=host, port=port, open_access=open_access)
    try:
        settings.require_database_url()
        settings.require_redis_url()
    except ValueError as exc:
        raise fail(str(exc)) from exc
    _serve_clients(create_app(settings), settings, drain_seconds=30)


def worker(
    concurrency: Annotated[
        int | None, typer.Option(help="Parallel tasks (TANDEM_WORKER_CONCURRENCY).")
    ] = None,
) -> None:
    """Run a background worker; it embeds on the indexing model server."""
    from tandem.model_files import ModelNotPrepared
    from tandem.worker.main import run_worker

    configure_logging("worker")
    settings = build_settings(WorkerSettings, concurrency=concurrency)
    try:
        run_worker(settings)
    except (ValueError, ModelNotPrepared) as exc:
        raise fail(str(exc)) from exc


def web(
    host: Annotated[str | None, typer.Option(help="Bind address (TANDEM_BIND_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (WEB_SERVER_PORT, default 3000).")] = None,
    api_url: Annotated[
        str | None,
        typer.Option(
            "--api-url",
            help="Forward /api/ to this API server (API_SERVER_URL); unset behind nginx.",
        ),
    ] = None,
) -> None:
    """Run the web server: the browser UI for search, upload, documents and status."""
    from tandem.web.app import create_app

    configure_logging("web")
    settings = build_settings(WebSettings, bind_host=host, port=port, api_server_url=api_url)
    _serve_clients(create_app(settings), settings, drain_seconds=10)
