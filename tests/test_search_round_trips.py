"""How many statements one search sends, counted on the real engine; that a connection
prepares them (a search's transaction ends in COMMIT: psycopg forgets its prepared
statements on every ROLLBACK); that a query vector sent in binary is the vector its text
form names; and a search whose pooled connection the database dropped still answers (no
pre-ping: retried once)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from sqlalchemy import Engine, event, text
from sqlalchemy.orm import Session, sessionmaker

from tandem.db import catalog
from tandem.db.models import vector_literal
from tandem.db.session import make_engine, make_session_factory
from tandem.db.vector_param import VectorParam
from tandem.index.fusion import Fusion
from tandem.index.postgres import PostgresIndex
from tandem.index.protocol import IndexQuery, SearchMode
from tests.test_index_contract import chunk, unit

# Per mode, at most this many statements (the pool's pre-ping is off for searches; the
# transaction's BEGIN and COMMIT are not statements here). Keyword: terms and
# statistics, the top k, the page. Semantic: HNSW settings, the top k, the page. Hybrid,
# on two connections at once: terms, keyword top k, its cosines | HNSW settings, vector
# top k with their BM25, the page.
MOST_STATEMENTS = {SearchMode.KEYWORD: 3, SearchMode.SEMANTIC: 3, SearchMode.HYBRID: 6}


@pytest.fixture
def search_engine(empty_database: sessionmaker[Session], postgres_url: str) -> Iterator[Engine]:
    with empty_database.begin() as session:
        writer = PostgresIndex(empty_database).writer
        documents = {}
        for number in range(6):
            document_id = f"doc-{number}"
            catalog.upsert_document(
                session,
                catalog.DocumentInfo(document_id, "T", document_id, "text/plain", {}, "h", 1),
            )
            documents[document_id] = [
                chunk(0, f"river boat number {number} on the water", number),
                chunk(1, f"mountain trail {number} above the river", 10 + number),
            ]
        writer.replace_chunks(session, documents, existing=())
    engine = make_engine(postgres_url, pre_ping=False, pool_size=2)
    yield engine
    engine.dispose()


def count_statements(engine: Engine) -> list[str]:
    statements: list[str] = []

    def seen(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", seen)
    return statements


@pytest.mark.parametrize("mode", list(SearchMode))
def test_one_search_sends_few_statements(search_engine: Engine, mode: SearchMode) -> None:
    index = PostgresIndex(make_session_factory(search_engine), Fusion.LINEAR)
    query = IndexQuery("river trail", unit(3), mode, 3)
    warm = index.search(query)  # the pool's connections exist
    statements = count_statements(search_engine)
    hits = index.search(query)
    assert [h.document_id for h in hits] == [h.document_id for h in warm]
    assert len(hits) == 3
    assert 0 < len(statements) <= MOST_STATEMENTS[mode], statements


@pytest.mark.parametrize("mode", list(SearchMode))
def test_a_connection_prepares_the_statements_its_searches_repeat(
    search_engine: Engine, mode: SearchMode
) -> None:
    index = PostgresIndex(make_session_factory(search_engine), Fusion.LINEAR)
    # Past psycopg's threshold (5 runs of one statement on one connection). One search at
    # a time: semantic and keyword searches reuse the one pooled connection; hybrid's two
    # connections each run their half of the statements.
    for seed in range(8):
        index.search(IndexQuery("river trail", unit(seed), mode, 3))
    prepared: set[str] = set()
    for _ in range(2):  # each pooled connection in turn (the pool hands them out FIFO)
        with search_engine.connect() as connection, connection.begin():
            found = connection.execute(text("SELECT statement FROM pg_prepared_statements"))
            prepared |= set(found.scalars())
    expected = {SearchMode.KEYWORD: "bm25_postings", SearchMode.SEMANTIC: "<=>"}
    for mode_, fragment in expected.items():
        if mode in (mode_, SearchMode.HYBRID):
            assert any(fragment in sql for sql in prepared), prepared


def test_a_binary_query_vector_is_the_vector_its_text_form_names(
    search_engine: Engine,
) -> None:
    vector = unit(7)
    with search_engine.connect() as connection:
        binary, from_text = connection.execute(
            text("SELECT CAST(:b AS vector)::text, CAST(:t AS vector)::text"),
            {"b": VectorParam(vector), "t": vector_literal(vector)},
        ).one()
    assert binary == from_text
    read_back = np.array(binary.strip("[]").split(","), dtype=np.float32)
    assert np.array_equal(read_back, vector)


def test_a_dropped_connection_costs_a_retry_not_an_error(
    search_engine: Engine, postgres_url: str
) -> None:
    index = PostgresIndex(make_session_factory(search_engine), Fusion.LINEAR)
    query = IndexQuery("river", unit(3), SearchMode.HYBRID, 3)
    expected = [h.document_id for h in index.search(query)]
    with search_engine.connect() as connection:
        pids = {connection.execute(text("SELECT pg_backend_pid()")).scalar_one()}
    admin = make_engine(postgres_url, pool_size=1)
    with admin.begin() as connection:
        # Every pooled connection of the search engine: those the database restart drops.
        pids |= set(
            connection.execute(
                text(
                    "SELECT pid FROM pg_stat_activity WHERE pid <> pg_backend_pid()"
                    " AND datname = current_database() AND state = 'idle'"
                )
            ).scalars()
        )
        connection.execute(
            text("SELECT pg_terminate_backend(p) FROM unnest(CAST(:p AS int[])) AS p"),
            {"p": sorted(pids)},
        )
    admin.dispose()
    statements = count_statements(search_engine)
    assert [h.document_id for h in index.search(query)] == expected
    assert len(statements) > MOST_STATEMENTS[SearchMode.HYBRID]  # the round ran again
