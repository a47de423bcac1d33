"""Data commands: API keys, migrations, and the thin API clients `ingest` and `search`."""

from __future__ import annotations

import html
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from tandem.api_client.bulk_upload import BATCH_FILES
from tandem.commands.common import build_settings, console, fail
from tandem.config import StorageSettings, WorkerSettings
from tandem.search_mode import SearchMode

if TYPE_CHECKING:
    # The heavy libraries (SQLAlchemy, httpx, the wire models) load in the commands that
    # use them, so `tandem --help` and every other command start without them.
    from sqlalchemy import Engine

    from tandem.api_client.bulk_upload import AttemptTracker

db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)

ApiUrl = Annotated[str, typer.Option(envvar="TANDEM_API_URL", help="The API server's URL.")]
ApiKey = Annotated[
    str | None, typer.Option(envvar="TANDEM_API_KEY", help="API key (TANDEM_API_KEY).")
]
DEFAULT_API = "http://127.0.0.1:8080"


def _engine(settings: StorageSettings) -> Engine:
    """DATABASE_URL's, or the local `tandem up` stack's (from the data dir) when unset."""
    from tandem.commands.principals import database_url
    from tandem.db.session import make_engine

    return make_engine(database_url(settings), pool_size=1)


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
    batch_files: Annotated[
        int, typer.Option(min=1, max=1000, help="Files per upload request.")
    ] = BATCH_FILES,
) -> None:
    """Upload files through the API (in requests of --batch-files) and show indexing
    progress: files/s and the time left."""
    from tandem.api_client.bulk_upload import (
        AttemptTracker,
        NameClash,
        collect_files,
        send_batch,
        upload_batches,
    )
    from tandem.api_client.client import ApiRequestFailed, TandemClient

    try:
        collected = collect_files(paths)
    except NameClash as exc:
        raise fail(str(exc)) from exc
    for problem in collected.problems[:SHOWN_ERRORS]:
        console.print(f"[yellow]skipped[/yellow] {escape(problem)}")
    files = collected.files
    if not files:
        raise fail("no files to upload")
    started = time.monotonic()
    try:
        with TandemClient(api_url, api_key) as client, progress_bar() as progress:
            tracker = AttemptTracker(client)
            sending = progress.add_task("uploading", total=len(files))
            indexing = progress.add_task("indexing", total=len(files), visible=wait)
            polled = 0.0
            for batch in upload_batches(files, batch_files):
                for sent in send_batch(client, batch):
                    tracker.add(sent)
                    progress.advance(sending, len(sent.files))
                if wait and time.monotonic() - polled > POLL_SECONDS:
                    tracker.poll()
                    progress.update(indexing, completed=tracker.done)
                    polled = time.monotonic()
            while wait and not tracker.finished:
                tracker.poll()
                progress.update(indexing, completed=tracker.done)
                if not tracker.finished:
                    time.sleep(POLL_SECONDS)
    except ApiRequestFailed as exc:
        raise fail(str(exc), code=1) from exc
    if not wait:
        console.print(f"{len(files)} file(s) queued in {len(tracker.sizes)} index attempt(s)")
        return
    _report(tracker, len(files), time.monotonic() - started)


POLL_SECONDS = 0.5
SHOWN_ERRORS = 20


class FilesPerSecond(ProgressColumn):
    """Recent speed of a task (Rich's moving estimate), in files or documents per second."""

    def __init__(self, unit: str) -> None:
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        shown = "-" if speed is None else f"{speed:,.1f}"
        return Text(f"{shown} {self.unit}/s", style="progress.data.speed")


def progress_bar(unit: str = "files") -> Progress:
    return Progress(
        TextColumn("{task.description:<10}"),
        BarColumn(),
        MofNCompleteColumn(),
        FilesPerSecond(unit),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
    )


def _report(tracker: AttemptTracker, files: int, seconds: float) -> None:
    errors = tracker.errors()
    for error in errors[:SHOWN_ERRORS]:
        console.print(f"[red]failed[/red] {escape(error)}")
    if len(errors) > SHOWN_ERRORS:
        console.print(f"… and {len(errors) - SHOWN_ERRORS} more failed")
    indexed = tracker.done - tracker.failed
    # As for one index attempt: failed when nothing could be indexed.
    failed = indexed == 0 and tracker.failed > 0
    status = "failed" if failed else "succeeded"
    console.print(
        f"{status}: {indexed} indexed, {tracker.failed} failed "
        f"({files} files in {seconds:.1f} s, {files / max(seconds, 1e-9):.1f} files/s)"
    )
    if failed:
        raise typer.Exit(1)


def search(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    mode: Annotated[SearchMode, typer.Option(help="hybrid, semantic or keyword.")] = (
        SearchMode.HYBRID
    ),
    limit: Annotated[int, typer.Option(min=1, max=100)] = 10,
    api_url: ApiUrl = DEFAULT_API,
    api_key: ApiKey = None,
) -> None:
    """Search through the API and print the ranked chunks."""
    from tandem.api_client.client import ApiRequestFailed, TandemClient
    from tandem.wire.api import SearchRequest

    try:
        with TandemClient(api_url, api_key) as client:
            result = client.search(SearchRequest(query=query, mode=mode, limit=limit))
    except ApiRequestFailed as exc:
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


def local_stack_urls(settings: WorkerSettings) -> WorkerSettings:
    """Unset DATABASE_URL / REDIS_URL: the ones `tandem up` serves from the data dir, and
    unless one is set, the model server key `tandem up` keeps there."""
    if settings.database_url and settings.redis_url:
        return settings
    from tandem.commands.principals import database_url
    from tandem.local.services.model_key import read_key
    from tandem.local.services.redis import LocalRedis
    from tandem.local.stack import LocalPorts

    # Their URLs carry the passwords kept in the data dir.
    redis = LocalRedis(settings.data_dir / "redis", LocalPorts().redis).url()
    return settings.model_copy(
        update={
            "database_url": database_url(settings),
            "redis_url": settings.redis_url or redis,
            "model_server_api_key": settings.model_server_api_key or read_key(settings.data_dir),
        }
    )


def reindex(
    restart: Annotated[
        bool, typer.Option(help="Start again from the first document, ignoring saved progress.")
    ] = False,
    batch_documents: Annotated[
        int, typer.Option(min=1, max=1000, help="Documents re-embedded per transaction.")
    ] = 16,
) -> None:
    """Re-embed every document with the indexing server's current model and precision
    (e.g. after changing TANDEM_PRECISION), in place; resumes where an interrupted run
    stopped. Needs DATABASE_URL, REDIS_URL and INDEXING_MODEL_SERVER_HOST/PORT, as a
    worker does (unset URLs: the local `tandem up` stack's)."""
    from redis import Redis

    from tandem.db.session import make_session_factory
    from tandem.model_client.client import ModelClient, ModelServerError, ModelServerUnavailable
    from tandem.worker.reindex import (
        ProgressStore,
        Reindexer,
        ReindexError,
        document_counts,
        plan_run,
        served_model,
    )

    settings = local_stack_urls(build_settings(WorkerSettings))
    try:
        model = served_model(settings.indexing_model_server_url, settings.model_server_api_key)
    except ReindexError as exc:
        raise fail(str(exc), code=1) from exc
    engine = _engine(settings)
    redis = Redis.from_url(settings.require_redis_url(), socket_timeout=10.0)
    store = ProgressStore(redis)
    run = plan_run(store.load(), model, restart=restart)
    embedder = ModelClient(
        settings.indexing_model_server_urls,
        timeout=settings.model_timeout_seconds,
        batch_size=settings.embed_batch_size,
        api_key=settings.model_server_api_key or "",
    )
    try:
        if run.finished:
            console.print(
                f"already re-embedded with {model.model_id} ({model.precision}) at "
                f"{run.finished_at}: {run.documents} documents; --restart re-embeds again"
            )
            return
        sessions = make_session_factory(engine)
        done, total = document_counts(sessions, run.after)
        resumed = f", resuming after {done} done" if run.after else ""
        console.print(
            f"re-embedding {total} documents with {model.model_id} ({model.precision}){resumed}"
        )
        reindexer = Reindexer(sessions, embedder, store, documents_per_batch=batch_documents)
        with progress_bar("docs") as progress:
            task = progress.add_task("reindexing", total=total, completed=done)
            run = reindexer.run(run, lambda _run, documents: progress.advance(task, documents))
        console.print(f"done: {run.documents} documents, {run.chunks} chunks re-embedded")
    except (ReindexError, ModelServerError, ModelServerUnavailable) as exc:
        raise fail(f"{exc} (run `tandem reindex` again to resume)", code=1) from exc
    finally:
        embedder.close()
        redis.close()
        engine.dispose()
