"""`tandem services …` (hidden): what `tandem up` runs as its database and broker."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn, Protocol

import typer

from tandem.commands.common import fail
from tandem.logs import configure_logging

services_app = typer.Typer(help="Run a local server in the foreground.", no_args_is_help=True)

DataDirOption = Annotated[Path, typer.Option(help="The server's data directory.")]
PortOption = Annotated[int, typer.Option(min=1, max=65535, help="Port on 127.0.0.1.")]


class _LocalServer(Protocol):
    def prepare(self) -> None: ...
    def exec_server(self) -> NoReturn: ...


def _become(name: str, server: _LocalServer) -> None:
    """Prepare the data directory, then replace this process with the server."""
    from tandem.local.services.process import ServiceError

    configure_logging(name)
    try:
        server.prepare()
        server.exec_server()
    except (ServiceError, OSError) as exc:
        raise fail(f"{name}: {exc}", code=1) from exc


@services_app.command("postgres")
def services_postgres(data_dir: DataDirOption, port: PortOption) -> None:
    """Create the cluster and database if missing, then become the PostgreSQL server."""
    from tandem.local.services.postgres import LocalPostgres

    _become("postgres", LocalPostgres(data_dir, port))


@services_app.command("postgres-replica")
def services_postgres_replica(
    data_dir: DataDirOption,
    port: PortOption,
    primary_data_dir: Annotated[Path, typer.Option(help="The primary's data directory.")],
    primary_port: Annotated[int, typer.Option(min=1, max=65535, help="The primary's port.")],
) -> None:
    """Copy the local primary once (pg_basebackup), then become its hot standby."""
    from tandem.local.services.postgres import LocalPostgres
    from tandem.local.services.postgres_replica import standby_of

    primary = LocalPostgres(primary_data_dir, primary_port)
    _become(data_dir.name, standby_of(primary, data_dir, port))


@services_app.command("redis")
def services_redis(data_dir: DataDirOption, port: PortOption) -> None:
    """Become a Redis server persisting to an append-only file in the data directory."""
    from tandem.local.services.redis import LocalRedis

    _become("redis", LocalRedis(data_dir, port))
