"""The benchmarks' loads end with every table all-visible, as a live system's autovacuum
leaves it: else BM25 reads each posting from the table, which no live system does."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import psycopg
import pytest
from benchmarks import search_corpus
from benchmarks.search_corpus import SyntheticChunk

from tandem.db.migrate import upgrade
from tandem.db.session import make_engine
from tests.support import scratch_database

DATABASE = "vacuum_check"


@pytest.fixture
def loaded_database(postgres_url: str) -> Iterator[str]:
    """A database of its own (the session's server: synchronous_commit off, as the
    benchmarks run theirs), its schema migrated, 400 chunks COPYed in and committed."""
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
    with scratch_database(postgres_url, DATABASE) as url:
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        conninfo = search_corpus.conninfo(url)
        with psycopg.connect(conninfo) as connection:
            search_corpus.copy_chunks(connection, chunks)
        yield conninfo


def test_a_load_is_all_visible_right_after_it_is_committed(loaded_database: str) -> None:
    with psycopg.connect(loaded_database) as connection:
        shares = search_corpus.vacuum_for_search(connection)
        postings = connection.execute("SELECT count(*) FROM bm25_postings").fetchone()
    assert postings is not None and postings[0] > 1000
    assert shares == dict.fromkeys(search_corpus.VACUUMED_TABLES, 1.0)
