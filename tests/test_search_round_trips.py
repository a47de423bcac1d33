"""How many statements one search sends, counted on the real engine; and a search whose
pooled connection the database dropped still answers (no pre-ping: retried once)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, event, text
from sqlalchemy.orm import Session, sessionmaker

from tandem.db import catalog
from tandem.db.session import make_engine, make_session_factory
from tandem.index.fusion import Fusion
from tandem.index.postgres import PostgresIndex
from tandem.index.protocol import IndexQuery, SearchMode
from tests.test_index_contract import chunk, unit

# Per mode, at most this many statements (the pool's pre-ping is off for searches; the
# transaction's BEGIN and ROLLBACK are not statements here). Keyword: terms and
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
