"""`tandem users`, `tandem groups` and `tandem api-key`: principals, straight in the
database (`DATABASE_URL`, or the local stack's in the data dir when it is unset)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from tandem.commands.common import build_settings, console, fail
from tandem.config import StorageSettings
from tandem.db.scopes import Scope

if TYPE_CHECKING:
    # SQLAlchemy and the database models load when a command runs, not for `--help`.
    from sqlalchemy.orm import Session

users_app = typer.Typer(help="Users (who keys belong to and documents are shared with).")
groups_app = typer.Typer(help="Groups of users.", no_args_is_help=True)
api_key_app = typer.Typer(help="API keys: scoped, optionally expiring.", no_args_is_help=True)
users_app.info.no_args_is_help = True


def database_url(settings: StorageSettings) -> str:
    """DATABASE_URL, else the local `tandem up` stack's (its password from the data dir)."""
    if settings.database_url:
        return settings.database_url
    from tandem.local.services.postgres import LocalPostgres
    from tandem.local.stack import LocalPorts

    return LocalPostgres(settings.data_dir / "postgres", LocalPorts().postgres).url()


@contextmanager
def transaction() -> Iterator[Session]:
    """A migrated database's session, committed on success; a clear error otherwise."""
    from sqlalchemy.exc import OperationalError

    from tandem.db import principals
    from tandem.db.migrate import upgrade
    from tandem.db.session import make_engine, make_session_factory

    engine = make_engine(database_url(build_settings(StorageSettings)), pool_size=1)
    try:
        upgrade(engine)
        with make_session_factory(engine).begin() as session:
            yield session
    except OperationalError as exc:
        raise fail(
            "cannot reach the database (is `tandem up` running, or DATABASE_URL set?): "
            f"{str(exc.orig).splitlines()[0] if exc.orig else exc}",
            code=1,
        ) from exc
    except principals.PrincipalError as exc:
        raise fail(str(exc), code=1) from exc
    finally:
        engine.dispose()


Name = Annotated[str, typer.Argument(help="The name (a-z, 0-9, . _ -).")]


@users_app.command("add")
def users_add(
    name: Name, admin: Annotated[bool, typer.Option(help="May manage everything.")] = False
) -> None:
    from tandem.db import principals

    with transaction() as session:
        principals.add_user(session, name, admin=admin)
    console.print(f"added user {name!r}" + (" (admin)" if admin else ""))


@users_app.command("list")
def users_list() -> None:
    from tandem.db import principals

    with transaction() as session:
        table = Table("user", "admin", "groups", "created")
        for user, groups in principals.list_users(session):
            table.add_row(
                user.name,
                "yes" if user.is_admin else "",
                ", ".join(groups),
                f"{user.created_at:%F}",
            )
    console.print(table)


@users_app.command("remove")
def users_remove(name: Name) -> None:
    """Remove a user and their keys (documents they uploaded stay)."""
    from tandem.db import principals

    with transaction() as session:
        principals.remove_user(session, name)
    console.print(f"removed user {name!r} and their keys")


@groups_app.command("add")
def groups_add(
    name: Name,
    member: Annotated[list[str] | None, typer.Option(help="A member (repeatable).")] = None,
) -> None:
    from tandem.db import principals

    with transaction() as session:
        principals.add_group(session, name, member or [])
    console.print(f"added group {name!r}" + (f": {', '.join(member)}" if member else ""))


@groups_app.command("add-member")
def groups_add_member(group: Name, user: Name) -> None:
    from tandem.db import principals

    with transaction() as session:
        principals.add_member(session, group, user)
    console.print(f"{user!r} is in {group!r}")


@groups_app.command("remove-member")
def groups_remove_member(group: Name, user: Name) -> None:
    from tandem.db import principals

    with transaction() as session:
        removed = principals.remove_member(session, group, user)
    console.print(f"{user!r} left {group!r}" if removed else f"{user!r} was not in {group!r}")


@groups_app.command("list")
def groups_list() -> None:
    from tandem.db import principals

    with transaction() as session:
        table = Table("group", "members")
        for group, members in principals.list_groups(session):
            table.add_row(group.name, ", ".join(members))
    console.print(table)


@api_key_app.command("create")
def api_key_create(
    scope: Annotated[Scope, typer.Option(help="search, ingest or admin.")] = Scope.ADMIN,
    user: Annotated[str | None, typer.Option(help="Whose key (none: a service key).")] = None,
    expires: Annotated[str | None, typer.Option(help="Expires after, e.g. 90d or 12h.")] = None,
    name: Annotated[str, typer.Option(help="What the key is for.")] = "default",
) -> None:
    """Create a key and print it alone on the first line (only its hash is stored)."""
    from tandem.wire.api import interval_seconds

    try:
        expires_at = (
            datetime.now(UTC) + timedelta(seconds=interval_seconds(expires)) if expires else None
        )
    except ValueError as exc:
        raise fail(f"--expires: {exc}") from exc
    from tandem.db import principals

    with transaction() as session:
        _, key = principals.create_key(session, name, scope=scope, user=user, expires_at=expires_at)
    typer.echo(key)
    console.print("Store this key now: it cannot be shown again.")


@api_key_app.command("list")
def api_key_list() -> None:
    """Every key: id, user, scope, created, last used, expiry (never the key)."""
    from tandem.db import principals

    with transaction() as session:
        table = Table("id", "name", "user", "scope", "created", "last used", "expires", "state")
        now = datetime.now(UTC)
        for key, user in principals.list_keys(session):
            state = "revoked" if key.revoked_at else "active"
            if key.expires_at is not None and key.expires_at <= now and not key.revoked_at:
                state = "expired"
            table.add_row(
                str(key.id),
                key.name,
                user or "(service)",
                key.scope,
                f"{key.created_at:%F %H:%M}",
                f"{key.last_used_at:%F %H:%M}" if key.last_used_at else "never",
                f"{key.expires_at:%F %H:%M}" if key.expires_at else "never",
                state,
            )
    console.print(table)


@api_key_app.command("revoke")
def api_key_revoke(
    id_or_key: Annotated[str, typer.Argument(help="The key's id, or the key itself.")],
) -> None:
    """Revoke a key; the API refuses it within its key cache's lifetime (5 s)."""
    from tandem.db import principals

    with transaction() as session:
        revoked = principals.revoke_key(session, id_or_key)
    if not revoked:
        raise fail("no active key with that id", code=1)
    console.print("revoked")
