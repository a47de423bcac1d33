"""Migrations and models describe the same schema, and migrations run both ways."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, inspect, text
from sqlalchemy.engine import make_url

from tandem.db.migrate import HEAD_REVISION, alembic_config, current_revision, upgrade
from tandem.db.schema import METADATA
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


def _modelled(obj: object, name: str | None, kind: str, reflected: bool, _: object) -> bool:
    """Everything but the BM25 impact index, whose expression the index layer writes
    (tests/test_bm25_formula.py compares it with the live index)."""
    return not (kind == "index" and name == "bm25_postings_impact")


def test_the_head_revision_upgrade_skips_alembic_for_is_alembics_head() -> None:
    """A new migration without HEAD_REVISION moved to it would never be applied."""
    assert ScriptDirectory.from_config(alembic_config()).get_heads() == [HEAD_REVISION]


def test_models_match_migrations(scratch_engine: Engine) -> None:
    assert current_revision(scratch_engine) is None
    upgrade(scratch_engine)
    upgrade(scratch_engine)  # idempotent: start-up runs it every time
    assert current_revision(scratch_engine) == HEAD_REVISION
    with scratch_engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"include_object": _modelled})
        assert compare_metadata(context, METADATA) == []
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


def test_documents_of_an_existing_database_keep_their_ids_and_become_uploads(
    scratch_engine: Engine,
) -> None:
    """0003 -> 0004 over real data: the old `source` (the uploaded file name) is the path,
    ids stay as they were, the chunks and their BM25 postings are untouched."""
    upgrade(scratch_engine, "0003")
    vector = "[" + ",".join(["0.05"] * 384) + "]"
    with scratch_engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO documents (id, title, source, content_type, metadata, "
                "content_hash, size_bytes, chunk_count) VALUES "
                "('README.md', 'Readme', 'README.md', 'text/markdown', '{}', 'h', 10, 1)"
            )
        )
        connection.execute(
            text(
                "INSERT INTO chunks (document_id, ordinal, title, source, content_type, "
                "metadata, text, token_count, embedding) VALUES ('README.md', 0, 'Readme', "
                "'README.md', 'text/markdown', '{}', 'walrus husbandry notes', 4, "
                "CAST(:v AS vector))"
            ),
            {"v": vector},
        )
        postings = connection.execute(text("SELECT count(*) FROM bm25_postings")).scalar_one()
    upgrade(scratch_engine)
    with scratch_engine.connect() as connection:
        document = connection.execute(text("SELECT id, source, path FROM documents")).one()
        chunk = connection.execute(text("SELECT document_id, source, path FROM chunks")).one()
        kept = connection.execute(text("SELECT count(*) FROM bm25_postings")).scalar_one()
        sources = connection.execute(text("SELECT name, kind FROM sources")).all()
    assert tuple(document) == ("README.md", "upload", "README.md")
    assert tuple(chunk) == ("README.md", "upload", "README.md")
    assert postings > 0 and kept == postings
    assert [tuple(s) for s in sources] == [("upload", "upload")]


def test_existing_keys_become_admin_service_keys_and_documents_public(
    scratch_engine: Engine,
) -> None:
    upgrade(scratch_engine, "0004")
    with scratch_engine.begin() as connection:
        connection.execute(
            text("INSERT INTO api_keys (name, prefix, key_hash) VALUES ('ops', 'tdm_ab', 'h1')")
        )
        connection.execute(
            text(
                "INSERT INTO documents (id, title, source, path, content_type, metadata, "
                "content_hash, size_bytes, chunk_count) VALUES "
                "('a.md', 'A', 'upload', 'a.md', 'text/markdown', '{}', 'h', 1, 0)"
            )
        )
    upgrade(scratch_engine)
    with scratch_engine.connect() as connection:
        key = connection.execute(text("SELECT user_id, scope, expires_at FROM api_keys")).one()
        readers = connection.execute(text("SELECT readers, owner_id FROM documents")).one()
    assert tuple(key) == (None, "admin", None)
    assert tuple(readers) == (["public"], None)
