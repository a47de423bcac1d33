"""Migrations and models describe the same schema, and migrations run both ways."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, create_engine, inspect, text
from sqlalchemy.engine import make_url

from tandem.db.migrate import alembic_config, current_revision, upgrade
from tandem.db.models import Base
from tandem.db.session import make_engine, normalize_url


@pytest.fixture
def scratch_engine(postgres_url: str) -> Iterator[Engine]:
    """A database of its own on the session's server, so downgrading harms no other test."""
    admin = create_engine(normalize_url(postgres_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text("DROP DATABASE IF EXISTS schema_check"))
        connection.execute(text("CREATE DATABASE schema_check"))
    engine = make_engine(
        make_url(normalize_url(postgres_url)).set(database="schema_check").render_as_string(False)
    )
    yield engine
    engine.dispose()
    with admin.connect() as connection:
        connection.execute(text("DROP DATABASE schema_check"))
    admin.dispose()


def test_models_match_migrations(scratch_engine: Engine) -> None:
    assert current_revision(scratch_engine) is None
    upgrade(scratch_engine)
    upgrade(scratch_engine)  # idempotent: start-up runs it every time
    assert current_revision(scratch_engine) == "0004"
    with scratch_engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
        indexes = {i["name"] for i in inspect(connection).get_indexes("chunks")}
    assert {"ix_chunks_embedding_hnsw", "ix_chunks_metadata"} <= indexes
    assert "ix_chunks_tsv" not in indexes  # BM25 reads its postings, not a GIN index


def test_downgrade_and_upgrade_again(scratch_engine: Engine) -> None:
    upgrade(scratch_engine)
    config = alembic_config()
    with scratch_engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "base")
    with scratch_engine.connect() as connection:
        assert set(inspect(connection).get_table_names()) == {"alembic_version"}
    upgrade(scratch_engine)
    with scratch_engine.connect() as connection:
        tables = set(inspect(connection).get_table_names())
    assert {"documents", "chunks", "index_attempts", "index_attempt_items", "api_keys"} <= tables
