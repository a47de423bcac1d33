"""Apply Alembic migrations programmatically (at start-up and by `tandem db upgrade`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, text

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
# The newest migration's revision (tests/test_db_schema.py checks it is Alembic's head):
# a database already there is not handed to Alembic, whose import alone (Mako, the
# operations) costs about half a CPU second at every start of a server, worker or command.
HEAD_REVISION = "0007"
# Serializes concurrent start-ups (API server and workers) migrating the same database.
MIGRATION_LOCK_ID = 7_415_302


def alembic_config() -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    with engine.begin() as connection:
        connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})
        if revision == "head" and _revision(connection) == HEAD_REVISION:
            return
        from alembic import command

        config = alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return _revision(connection)


def _revision(connection: Connection) -> str | None:
    exists = connection.execute(text("SELECT to_regclass('alembic_version')")).scalar()
    if exists is None:
        return None
    value = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    return str(value) if value is not None else None
