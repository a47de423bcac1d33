"""`tandem services …` (hidden): what `tandem up` runs as its database and broker."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tandem.commands.common import fail
from tandem.logs import configure_logging

services_app = typer.Typer(help="Run a local server in the foreground.", no_args_is_help=True)

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
        raise fail(f"postgres: {exc}", code=1) from exc


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
        raise fail(f"redis: {exc}", code=1) from exc
