"""`tandem up`: the whole stack on one machine; `tandem logs`: what its services wrote."""

from __future__ import annotations

import signal
from collections import deque
from pathlib import Path
from typing import Annotated

import typer

from tandem.commands.common import build_settings, fail
from tandem.config import ModelServerSettings, StorageSettings, WorkerSettings
from tandem.logs import configure_logging

LOG_DIR_NAME = "logs"


def _log_dir(storage: StorageSettings) -> Path:
    return storage.data_dir / LOG_DIR_NAME


def up(
    ready_timeout: Annotated[float, typer.Option(help="Seconds to wait for each service.")] = 120.0,
    api_port: Annotated[int, typer.Option(help="API server port.")] = 8080,
    web_port: Annotated[int, typer.Option(help="Web server (browser UI) port.")] = 3000,
    postgres_port: Annotated[int, typer.Option(help="Local PostgreSQL port.")] = 5433,
    redis_port: Annotated[int, typer.Option(help="Local Redis port.")] = 6380,
    pin_cpus: Annotated[
        bool,
        typer.Option(
            help="Pin each model server to its own CPUs instead of sharing all CPUs by priority."
        ),
    ] = False,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose", "-v", help="Also stream every service's output here, prefixed by name."
        ),
    ] = False,
    require_api_key: Annotated[
        bool,
        typer.Option(help="Require API keys (users, scopes, access) instead of open access."),
    ] = False,
    read_replicas: Annotated[
        int,
        typer.Option(
            min=0,
            max=8,
            help="Hot standbys of the local PostgreSQL serving the API's searches and reads.",
        ),
    ] = 0,
    replica_port: Annotated[int, typer.Option(help="First read replica's port.")] = 5434,
) -> None:
    """Start the whole stack on this machine in the foreground; Ctrl-C stops all of it.

    Services are restarted when they exit (a crash loop stops the stack); their output
    goes to <data dir>/logs (read it with `tandem logs`)."""
    from tandem.local.launcher import run_stack
    from tandem.local.service_logs import ServiceLog, ServiceLogHandler, log_path
    from tandem.local.stack import LocalPorts, local_stack_specs

    storage = build_settings(StorageSettings)
    log_dir = _log_dir(storage)
    own_log = ServiceLog(log_path(log_dir, "up"), "up")
    configure_logging("up", handler=ServiceLogHandler(own_log, "up"))
    ports = LocalPorts(
        api=api_port,
        web=web_port,
        postgres=postgres_port,
        redis=redis_port,
        replicas_from=replica_port,
    )
    try:
        specs, banner = local_stack_specs(
            build_settings(ModelServerSettings),
            storage,
            ports,
            pin_cpus=pin_cpus,
            require_api_key=require_api_key,
            worker=build_settings(WorkerSettings),
            read_replicas=read_replicas,
        )
    except ValueError as exc:
        raise fail(str(exc)) from exc
    code = run_stack(specs, ready_timeout, banner, log_dir=log_dir, verbose=verbose)
    own_log.close()
    raise typer.Exit(code)


def logs(
    service: Annotated[
        str | None,
        typer.Argument(help="One service (or a unique part of its name); all if left out."),
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines.")
    ] = False,
    lines: Annotated[
        int, typer.Option("--lines", "-n", min=0, help="How many recent lines to print first.")
    ] = 100,
) -> None:
    """Print the logs `tandem up` keeps for its services, readable, interleaved by time."""
    from tandem.local.service_log_view import (
        LogFollower,
        UnknownService,
        merged,
        render,
        select_logs,
    )
    from tandem.local.stack import SERVICE_NAMES, replica_service_names

    log_dir = _log_dir(build_settings(StorageSettings))
    names = [*SERVICE_NAMES, *replica_service_names(log_dir), "up"]
    try:
        paths = select_logs(log_dir, service, names)
    except UnknownService as exc:
        raise fail(str(exc)) from exc
    if not paths or (not follow and not any(path.exists() for path in paths)):
        raise fail(f"no logs in {log_dir} yet (`tandem up` writes them)", code=1)
    many = len(paths) > 1 or service is None
    follower = LogFollower(paths) if follow else None  # opened first: no gap after the tail
    for record in deque(merged(paths), maxlen=lines):
        typer.echo(render(record, with_service=many))
    if follower is None:
        return
    # Ctrl-C or SIGTERM ends following, even when started with SIGINT ignored (a shell's
    # background job): then Python installs no KeyboardInterrupt handler of its own.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.default_int_handler)
    try:
        for record in follower.records():
            typer.echo(render(record, with_service=many))
    except KeyboardInterrupt:
        raise typer.Exit(0) from None
