"""Hybrid search on two connections at once must not starve a small connection pool.

It cannot, by its order: the keyword side takes its connection first and finishes without
waiting for anything; the other side takes one only after the keyword side has read the
query's terms. So no search holds a connection while waiting for a connection."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from sqlalchemy.orm import Session, sessionmaker

from tandem.db import catalog
from tandem.db.session import make_engine, make_session_factory
from tandem.index.postgres import PostgresIndex
from tandem.index.protocol import IndexedChunk, IndexQuery, SearchMode
from tandem.model_files import FloatArray

WORDS = ["tide", "moon", "harbour", "sail", "anchor", "river", "delta", "storm", "coast", "reef"]


def unit(seed: int) -> FloatArray:
    vector = np.random.default_rng(seed).normal(size=384).astype(np.float32)
    return vector / np.linalg.norm(vector)


@pytest.fixture
def sessions(
    postgres_url: str, empty_database: sessionmaker[Session]
) -> Iterator[sessionmaker[Session]]:
    writer = empty_database
    for d in range(30):
        document_id = f"doc-{d}"
        with writer.begin() as session:
            catalog.upsert_document(
                session, catalog.DocumentInfo(document_id, "T", "s", "text/plain", {}, "h", 1)
            )
        body = " ".join(WORDS[(d + i) % len(WORDS)] for i in range(d % 7 + 3))
        PostgresIndex(writer).replace_document(
            document_id,
            [
                IndexedChunk(
                    ordinal=0,
                    text=body,
                    title=document_id,
                    path="s",
                    content_type="text/plain",
                    token_count=len(body.split()),
                    embedding=unit(d),
                )
            ],
        )
    # Two connections in all (pool_size 1 + overflow 1): one hybrid search fills it.
    engine = make_engine(postgres_url, pool_size=1)
    yield make_session_factory(engine)
    engine.dispose()


def test_many_concurrent_hybrid_searches_finish_on_a_two_connection_pool(
    sessions: sessionmaker[Session],
) -> None:
    index = PostgresIndex(sessions)
    queries = [
        IndexQuery(
            text=f"{WORDS[i % 10]} {WORDS[(i * 3) % 10]}",
            vector=unit(100 + i),
            mode=SearchMode.HYBRID,
            limit=5,
        )
        for i in range(24)
    ]
    alone = [[(h.document_id, h.score) for h in index.search(q)] for q in queries]
    started = time.monotonic()
    with ThreadPoolExecutor(12) as clients:
        together = list(clients.map(index.search, queries))
    # Waiting out the pool's 30 s checkout timeout would mean searches held every
    # connection while waiting for a second one.
    assert time.monotonic() - started < 20
    assert [[(h.document_id, h.score) for h in hits] for hits in together] == alone
    assert all(hits for hits in together)
