"""`tandem sources`: folders and web sites kept in sync, through the API (thin adapters)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from pydantic import ValidationError
from rich.markup import escape
from rich.table import Table

from tandem.commands.common import console, fail
from tandem.commands.data import DEFAULT_API, ApiKey, ApiUrl, progress_bar

if TYPE_CHECKING:
    # httpx and the wire models load when a command runs, not for `--help`.
    from tandem.api_client.client import TandemClient
    from tandem.wire.api import SourceOut, SyncOut

sources_app = typer.Typer(help="Folders and web sites kept in sync.", no_args_is_help=True)
add_app = typer.Typer(help="Add a source (its first sync starts at once).", no_args_is_help=True)
sources_app.add_typer(add_app, name="add")

Name = Annotated[str, typer.Option("--name", help="The source's name (a-z, 0-9, . _ -).")]
Every = Annotated[
    str | None, typer.Option("--every", help="Sync again on this interval: 90s, 10m, 6h, 1d.")
]
POLL_SECONDS = 0.5
FINISHED = ("succeeded", "failed", "interrupted")


def _add(source: Mapping[str, object], api_url: str, api_key: str | None) -> None:
    from tandem.api_client.client import ApiRequestFailed, TandemClient
    from tandem.wire.api import SourceIn

    try:
        body = SourceIn.model_validate(source)
    except ValidationError as exc:
        raise fail("; ".join(str(e["msg"]) for e in exc.errors())) from exc
    try:
        with TandemClient(api_url, api_key) as client:
            added = client.add_source(body)
    except ApiRequestFailed as exc:
        raise fail(str(exc), code=1) from exc
    every = f", every {body.every}" if body.every else ""
    console.print(f"added {added.kind} source {added.name!r}{every}; its first sync has started")
    console.print(f"  tandem sources sync {added.name} --wait   follows a sync")


@add_app.command("folder")
def add_folder(
    path: Annotated[Path, typer.Argument(help="A directory on the workers' host.")],
    name: Name,
    every: Every = None,
    include: Annotated[list[str] | None, typer.Option(help="Only paths matching (glob).")] = None,
    exclude: Annotated[list[str] | None, typer.Option(help="Skip paths matching (glob).")] = None,
    api_url: ApiUrl = DEFAULT_API,
    api_key: ApiKey = None,
) -> None:
    """A folder, recursively (hidden and .gitignore'd files skipped)."""
    source = {
        "name": name,
        "kind": "folder",
        "path": str(path.expanduser().resolve()),
        "include": include or [],
        "exclude": exclude or [],
        "every": every,
    }
    _add(source, api_url, api_key)


@add_app.command("web")
def add_web(
    url: Annotated[str, typer.Argument(help="The start URL; the crawl stays under its path.")],
    name: Name,
    every: Every = None,
    max_pages: Annotated[int, typer.Option(min=1, help="Pages at most.")] = 1000,
    max_depth: Annotated[int, typer.Option(min=0, help="Links from the start at most.")] = 10,
    rate: Annotated[
        float, typer.Option(min=0.01, max=100, help="Requests per second at most.")
    ] = 10.0,
    api_url: ApiUrl = DEFAULT_API,
    api_key: ApiKey = None,
) -> None:
    """A web site: its pages under the start URL (robots.txt and sitemap.xml honoured)."""
    source = {
        "name": name,
        "kind": "web",
        "url": url,
        "max_pages": max_pages,
        "max_depth": max_depth,
        "requests_per_second": rate,
        "every": every,
    }
    _add(source, api_url, api_key)


def _summary(sync: SyncOut | None) -> str:
    if sync is None:
        return "never synced"
    return (
        f"{sync.status}: {sync.added} added, {sync.updated} updated, "
        f"{sync.unchanged} unchanged, {sync.deleted} deleted, {sync.failed} failed"
    )


@sources_app.command("list")
def list_sources(api_url: ApiUrl = DEFAULT_API, api_key: ApiKey = None) -> None:
    """Each source, its last sync's counts and its next run."""
    from tandem.api_client.client import ApiRequestFailed, TandemClient

    try:
        with TandemClient(api_url, api_key) as client:
            listed = client.sources().items
    except ApiRequestFailed as exc:
        raise fail(str(exc), code=1) from exc
    table = Table("name", "kind", "where", "last sync", "next run")
    for source in listed:
        where = str(source.settings.get("path") or source.settings.get("url") or "")
        running = " (syncing)" if source.syncing else ""
        table.add_row(
            source.name,
            source.kind,
            escape(where),
            escape(_summary(source.last_sync)) + running,
            source.next_sync_at or "-",
        )
    console.print(table)


@sources_app.command("sync")
def sync(
    name: Annotated[str, typer.Argument(help="The source's name.")],
    wait: Annotated[bool, typer.Option(help="Follow the sync until it finishes.")] = False,
    api_url: ApiUrl = DEFAULT_API,
    api_key: ApiKey = None,
) -> None:
    """Sync a source now. With --wait: a progress bar, exit 1 if the sync failed."""
    from tandem.api_client.client import ApiRequestFailed, TandemClient

    try:
        with TandemClient(api_url, api_key) as client:
            before = client.source(name).last_sync
            client.sync_source(name)
            if not wait:
                console.print(f"sync of {name!r} requested")
                return
            done = _follow(client, name, before.id if before else 0)
    except ApiRequestFailed as exc:
        raise fail(str(exc), code=1) from exc
    for error in done.errors[:20]:
        console.print(f"[red]failed[/red] {escape(error)}")
    console.print(_summary(done))
    if done.status != "succeeded":
        raise typer.Exit(1)


def _follow(client: TandemClient, name: str, after: int) -> SyncOut:
    """Until a sync newer than `after` finishes; a bar of its items indexed."""
    with progress_bar("files") as progress:
        task = progress.add_task("syncing", total=None)
        while True:
            source: SourceOut = client.source(name)
            current = source.last_sync
            if current is not None and current.id > after:
                total = current.added + current.updated
                indexed = 0
                if current.attempt_id is not None and total:
                    indexed = client.attempt(current.attempt_id).done
                walked = current.walked_at is not None
                progress.update(
                    task,
                    description="indexing" if walked else "walking",
                    total=total if walked else None,
                    completed=indexed,
                )
                if current.status in FINISHED:
                    return current
            time.sleep(POLL_SECONDS)


@sources_app.command("remove")
def remove(
    name: Annotated[str, typer.Argument(help="The source's name.")],
    api_url: ApiUrl = DEFAULT_API,
    api_key: ApiKey = None,
) -> None:
    """Remove a source and every document it holds."""
    from tandem.api_client.client import ApiRequestFailed, TandemClient

    try:
        with TandemClient(api_url, api_key) as client:
            client.remove_source(name)
    except ApiRequestFailed as exc:
        raise fail(str(exc), code=1) from exc
    console.print(f"removed source {name!r} and its documents")
