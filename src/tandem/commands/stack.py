"""`tandem up`: the whole stack on one machine."""

from __future__ import annotations

from typing import Annotated

import typer

from tandem.commands.common import build_settings
from tandem.config import ModelServerSettings, StorageSettings
from tandem.logs import configure_logging


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
) -> None:
    """Start the whole stack on this machine in the foreground; Ctrl-C stops all of it."""
    from tandem.launcher import run_stack
    from tandem.stack import LocalPorts, local_stack_specs

    configure_logging("up")
    specs, banner = local_stack_specs(
        build_settings(ModelServerSettings),
        build_settings(StorageSettings),
        LocalPorts(api=api_port, web=web_port, postgres=postgres_port, redis=redis_port),
        pin_cpus=pin_cpus,
    )
    raise typer.Exit(run_stack(specs, ready_timeout, banner))
