"""Migrations and models describe the same schema, and migrations run both ways."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, text

from tandem.db.migrate import HEAD_REVISION, alembic_config, current_revision, upgrade
from tandem.db.schema import METADATA
from tandem.db.session import make_engine
from tests.support import scratch_database


@pytest.fixture
def scratch_engine(postgres_url: str) -> Iterator[Engine]:
    """A database of its own on the session's server, so downgrading harms no other test."""
    with scratch_database(postgres_url, "schema_check") as url:
        engine = make_engine(url)
        yield engine
        engine.dispose()


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


_VECTOR = "[" + ",".join(["0.05"] * 384) + "]"
# A chunk of the usual size: 120 distinct words (about 900 bytes, little to compress).
_PROSE = " ".join(f"{word}{n}" for n, word in enumerate(["walrus", "tusk", "floe"] * 40))


def test_postings_are_vacuumed_soon_and_vectors_stay_in_their_rows(
    scratch_engine: Engine,
) -> None:
    """BM25 reads postings from their index alone only where the visibility map is set:
    autovacuum must not wait for the default 20% of new rows; a chunk's vector is read
    from its row, not through TOAST (migration 0007)."""
    upgrade(scratch_engine)
    with scratch_engine.begin() as connection:
        options = connection.execute(
            text("SELECT reloptions FROM pg_class WHERE relname = 'bm25_postings'")
        ).scalar_one()
        connection.execute(
            text(
                "INSERT INTO documents (id, title, source, path, content_type, metadata, "
                "content_hash, size_bytes, chunk_count) VALUES "
                "('w.md', 'Walrus', 'upload', 'w.md', 'text/markdown', '{}', 'h', 10, 1)"
            )
        )
        # A row well over the 2 kB at which PostgreSQL moves values out of line.
        connection.execute(
            text(
                "INSERT INTO chunks (document_id, ordinal, title, source, path, content_type, "
                "metadata, text, token_count, embedding) VALUES ('w.md', 0, 'Walrus', "
                "'upload', 'w.md', 'text/markdown', '{}', :t, 4, CAST(:v AS vector))"
            ),
            {"t": _PROSE, "v": _VECTOR},
        )
        # A value kept in its row is not in the table's TOAST relation.
        toasted = connection.execute(
            text(
                "SELECT count(*) FROM chunks WHERE pg_column_toast_chunk_id(embedding) IS NOT NULL"
            )
        ).scalar_one()
    assert toasted == 0
    assert sorted(options) == [
        "autovacuum_vacuum_insert_scale_factor=0.02",
        "autovacuum_vacuum_scale_factor=0.02",
    ]


def test_chunks_indexed_before_bm25_get_their_postings(scratch_engine: Engine) -> None:
    """0001 -> 0002 over real data: every existing chunk's terms, lengths and the corpus
    totals, as the triggers would have kept them (the title counts twice)."""
    upgrade(scratch_engine, "0001")
    with scratch_engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO documents (id, title, source, content_type, metadata, "
                "content_hash, size_bytes, chunk_count) VALUES "
                "('w.md', 'Walrus', 'w.md', 'text/markdown', '{}', 'h', 10, 2)"
            )
        )
        for ordinal, body in enumerate(["walrus husbandry notes", "tusk care for walruses"]):
            connection.execute(
                text(
                    "INSERT INTO chunks (document_id, ordinal, title, source, content_type, "
                    "metadata, text, token_count, embedding) VALUES ('w.md', :o, 'Walrus', "
                    "'w.md', 'text/markdown', '{}', :t, 4, CAST(:v AS vector))"
                ),
                {"o": ordinal, "t": body, "v": _VECTOR},
            )
    upgrade(scratch_engine, "0002")
    with scratch_engine.connect() as connection:
        corpus = connection.execute(text("SELECT chunks, total_length FROM bm25_corpus")).one()
        walrus = connection.execute(
            text(
                "SELECT t.df, array_agg(p.tf ORDER BY p.chunk_id) FROM bm25_terms t"
                " JOIN bm25_postings p ON p.term_id = t.id WHERE t.lexeme = 'walrus'"
                " GROUP BY t.df"
            )
        ).one()
    # "walrus" (stemmed) is in both titles; in the first body once, in the second once.
    assert tuple(walrus) == (2, [3.0, 3.0])
    # Lengths: 3 body lexemes + 2 title, and 3 body lexemes ("for" is a stop word) + 2.
    assert tuple(corpus) == (2, 10.0)


def test_items_left_running_by_the_version_before_leases_are_taken_over(
    scratch_engine: Engine,
) -> None:
    """0002 -> 0003 over real data: a `running` item gets a lease that has run out (the
    first sweep takes it over), a queued one none; counters start at 0."""
    upgrade(scratch_engine, "0002")
    with scratch_engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO index_attempts (id, status) VALUES"
                " ('00000000-0000-0000-0000-000000000001', 'running')"
            )
        )
        for position, status in enumerate(["running", "queued", "succeeded"]):
            connection.execute(
                text(
                    "INSERT INTO index_attempt_items (attempt_id, position, document_id,"
                    " filename, metadata, size_bytes, status, chunk_count) VALUES"
                    " ('00000000-0000-0000-0000-000000000001', :p, :d, :f, '{}', 1, :s, 0)"
                ),
                {"p": position, "d": f"{status}.txt", "f": f"{status}.txt", "s": status},
            )
    upgrade(scratch_engine, "0003")
    with scratch_engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT status::text, lease_expires_at < now(), claims, failures"
                " FROM index_attempt_items ORDER BY position"
            )
        ).all()
    assert [tuple(r) for r in rows] == [
        ("running", True, 0, 0),
        ("queued", None, 0, 0),
        ("succeeded", None, 0, 0),
    ]


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
