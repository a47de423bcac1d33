"""The `tandem` command: thin adapters over the library; settings are built per command."""

from __future__ import annotations

import typer

from tandem.commands import data, models, principals, servers, services, sources, stack

app = typer.Typer(help="Tandem: self-hosted document search.", no_args_is_help=True)
app.command("up")(stack.up)
app.command("logs")(stack.logs)
app.command("model-server")(models.model_server)
app.command("api")(servers.api)
app.command("worker")(servers.worker)
app.command("web")(servers.web)
app.command("ingest")(data.ingest)
app.command("search")(data.search)
app.command("reindex")(data.reindex)
app.add_typer(models.models_app, name="models")
app.add_typer(principals.api_key_app, name="api-key")
app.add_typer(principals.users_app, name="users")
app.add_typer(principals.groups_app, name="groups")
app.add_typer(data.db_app, name="db")
app.add_typer(sources.sources_app, name="sources")
app.add_typer(services.services_app, name="services", hidden=True)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
