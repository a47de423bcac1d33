"""The benchmarks' loads end with every table all-visible, as a live system's autovacuum
leaves it: else BM25 reads each posting from the table, which no live system does."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import psycopg
import pytest
from benchmarks import search_corpus
from benchmarks.search_corpus import SyntheticChunk
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tandem.db.migrate import upgrade
from tandem.db.session import make_engine, normalize_url

DATABASE = "vacuum_check"


@pytest.fixture
def loaded_database(postgres_url: str) -> Iterator[str]:
    """A database of its own (the session's server: synchronous_commit off, as the
    benchmarks run theirs), its schema migrated, 400 chunks COPYed in and committed."""
    admin = create_engine(normalize_url(postgres_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f"DROP DATABASE IF EXISTS {DATABASE}"))
        connection.execute(text(f"CREATE DATABASE {DATABASE}"))
    url = make_url(normalize_url(postgres_url)).set(database=DATABASE).render_as_string(False)
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    rng = np.random.default_rng(7)
    words = ["walrus", "tusk", "kelp", "ice", "floe", "pup", "herd", "dive", "clam", "fjord"]
    chunks = []
    for n in range(400):
        vector = rng.standard_normal(384).astype(np.float32)
        body = " ".join(rng.choice(words, size=30))
        chunks.append(
            SyntheticChunk(
                f"d{n // 4}", n % 4, f"title {n // 4}", body, 30, vector / np.linalg.norm(vector)
            )
        )
    conninfo = search_corpus.conninfo(url)
    with psycopg.connect(conninfo) as connection:
        search_corpus.copy_chunks(connection, chunks)
    yield conninfo
    with admin.connect() as connection:
        connection.execute(text(f"DROP DATABASE {DATABASE} WITH (FORCE)"))
    admin.dispose()


def test_a_load_is_all_visible_right_after_it_is_committed(loaded_database: str) -> None:
    with psycopg.connect(loaded_database) as connection:
        shares = search_corpus.vacuum_for_search(connection)
        postings = connection.execute("SELECT count(*) FROM bm25_postings").fetchone()
    assert postings is not None and postings[0] > 1000
    assert shares == dict.fromkeys(search_corpus.VACUUMED_TABLES, 1.0)
