"""Data commands: API keys, migrations, and the thin API clients `ingest` and `search`."""

from __future__ import annotations

import html
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table
from sqlalchemy import Engine

from tandem.client import ApiError, TandemClient
from tandem.commands.common import build_settings, console, fail
from tandem.config import StorageSettings
from tandem.db.session import make_engine
from tandem.schemas import SearchModeName, SearchRequest

api_key_app = typer.Typer(help="Manage API keys.", no_args_is_help=True)
db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)

ApiUrl = Annotated[str, typer.Option(envvar="TANDEM_API_URL", help="The API server's URL.")]
ApiKey = Annotated[
    str | None, typer.Option(envvar="TANDEM_API_KEY", help="API key (TANDEM_API_KEY).")
]
DEFAULT_API = "http://127.0.0.1:8080"


def _engine(settings: StorageSettings) -> Engine:
    try:
        return make_engine(settings.require_database_url(), pool_size=1)
    except ValueError as exc:
        raise fail(str(exc)) from exc


@api_key_app.command("create")
def api_key_create(
    name: Annotated[str, typer.Option(help="Who or what the key is for.")] = "default",
) -> None:
    """Create an API key and print it once (only its hash is stored)."""
    from tandem.api.state import create_api_key
    from tandem.db.migrate import upgrade
    from tandem.db.session import make_session_factory

    engine = _engine(build_settings(StorageSettings))
    upgrade(engine)
    with make_session_factory(engine).begin() as session:
        key = create_api_key(session, name)
    engine.dispose()
    typer.echo(key)
    console.print("Store this key now: it cannot be shown again.")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply database migrations (the API server and workers also do this at start-up)."""
    from tandem.db.migrate import current_revision, upgrade

    engine = _engine(build_settings(StorageSettings))
    upgrade(engine)
    console.print(f"database at revision {current_revision(engine)}")
    engine.dispose()


def ingest(
    paths: Annotated[list[Path], typer.Argument(exists=True, help="Files or directories.")],
    api_url: ApiUrl = DEFAULT_API,
    api_key: ApiKey = None,
    wait: Annotated[bool, typer.Option(help="Wait until indexed.")] = True,
) -> None:
    """Upload files through the API and show indexing progress."""
    files = sorted(
        {
            p
            for path in paths
            for p in ([path] if path.is_file() else path.rglob("*"))
            if p.is_file()
        }
    )
    if not files:
        raise fail("no files to upload")
    try:
        with TandemClient(api_url, api_key) as client:
            accepted = client.upload(files)
            console.print(f"index attempt {accepted.attempt_id}: {len(files)} file(s) queued")
            if wait:
                _follow(client, accepted.attempt_id, len(files))
    except ApiError as exc:
        raise fail(str(exc), code=1) from exc


def _follow(client: TandemClient, attempt_id: str, total: int) -> None:
    columns = (TextColumn("indexing"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("indexing", total=total)
        while True:
            attempt = client.attempt(attempt_id)
            progress.update(task, completed=attempt.done)
            if attempt.status in ("succeeded", "failed"):
                break
            time.sleep(0.5)
    for item in attempt.items:
        if item.error:
            console.print(f"[red]failed[/red] {item.error}")
    console.print(
        f"{attempt.status}: {attempt.done - attempt.failed} indexed, {attempt.failed} failed"
    )
    if attempt.status == "failed":
        raise typer.Exit(1)


def search(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    mode: Annotated[SearchModeName, typer.Option(help="hybrid, semantic or keyword.")] = (
        SearchModeName.HYBRID
    ),
    limit: Annotated[int, typer.Option(min=1, max=100)] = 10,
    api_url: ApiUrl = DEFAULT_API,
    api_key: ApiKey = None,
) -> None:
    """Search through the API and print the ranked chunks."""
    try:
        with TandemClient(api_url, api_key) as client:
            result = client.search(SearchRequest(query=query, mode=mode, limit=limit))
    except ApiError as exc:
        raise fail(str(exc), code=1) from exc
    if result.notice:
        console.print(f"[yellow]{result.notice}[/yellow]")
    table = Table(
        "score", "document", "snippet", title=f"{result.mode.value} · {result.took_ms} ms"
    )
    for hit in result.results:
        marked = escape(
            html.unescape(hit.snippet.replace("<mark>", "\x01").replace("</mark>", "\x02"))
        )
        plain = marked.replace("\x01", "[bold]").replace("\x02", "[/bold]")
        table.add_row(f"{hit.score:.3f}", hit.title or hit.document_id, plain)
    console.print(table)
