"""The DocumentIndex contract's write side (`index.writer`, a ChunkWriter): every write
runs in the caller's transaction. Every implementation runs this suite (PostgreSQL today)."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from tandem.db import catalog
from tandem.index.fusion import Fusion
from tandem.index.postgres import PostgresIndex
from tandem.index.protocol import DocumentIndex, IndexQuery, SearchFilters, SearchMode
from tests.test_index_contract import chunk, unit


@pytest.fixture(params=[Fusion.LINEAR], ids=["postgres"])
def index(request: pytest.FixtureRequest, empty_database: sessionmaker[Session]) -> DocumentIndex:
    return PostgresIndex(empty_database, request.param)


@pytest.fixture
def sessions(empty_database: sessionmaker[Session]) -> sessionmaker[Session]:
    return empty_database


def add_catalog_row(session: Session, document_id: str) -> None:
    info = catalog.DocumentInfo(document_id, "T", document_id, "text/plain", {}, "h", 1)
    catalog.upsert_document(session, info)


def keyword(index: DocumentIndex, words: str, readers: tuple[str, ...] | None = None) -> list[str]:
    filters = SearchFilters(readers=readers)
    query = IndexQuery(words, None, SearchMode.KEYWORD, 10, filters=filters)
    return [h.document_id for h in index.search(query)]


def test_replace_chunks_commits_or_rolls_back_with_the_caller(
    index: DocumentIndex, sessions: sessionmaker[Session]
) -> None:
    with sessions() as session:
        add_catalog_row(session, "a")
        index.writer.replace_chunks(session, {"a": [chunk(0, "alpine meadow", 1)]}, existing=())
        session.rollback()
    assert index.chunk_count() == 0
    assert keyword(index, "meadow") == []
    with sessions.begin() as session:
        add_catalog_row(session, "a")
        add_catalog_row(session, "b")
        index.writer.replace_chunks(
            session,
            {
                "a": [chunk(0, "alpine meadow", 1)],
                "b": [chunk(0, "b one", 2), chunk(1, "b two", 3)],
            },
            existing=(),
        )
    assert (index.chunk_count("a"), index.chunk_count("b")) == (1, 2)
    assert keyword(index, "meadow") == ["a"]
    with sessions.begin() as session:
        index.writer.replace_chunks(session, {"a": [chunk(0, "glacier lake", 4)]})
    assert [h.text for h in index.chunks("a")] == ["glacier lake"]
    assert keyword(index, "meadow") == []  # the old chunk's postings went with it
    assert keyword(index, "glacier") == ["a"]


def test_delete_documents(index: DocumentIndex, sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        for document_id in ("a", "b"):
            add_catalog_row(session, document_id)
        index.writer.replace_chunks(
            session, {"a": [chunk(0, "alpha", 1), chunk(1, "alpha", 2)], "b": [chunk(0, "beta", 3)]}
        )
    with sessions() as session:
        assert index.writer.delete_documents(session, ["a"]) == 2
        session.rollback()
    assert index.chunk_count("a") == 2
    with sessions.begin() as session:
        assert index.writer.delete_documents(session, ["a", "missing"]) == 2
    assert (index.chunk_count("a"), index.chunk_count("b")) == (0, 1)
    assert keyword(index, "alpha beta") == ["b"]


def test_readers_of_a_document_and_of_a_source(
    index: DocumentIndex, sessions: sessionmaker[Session]
) -> None:
    with sessions.begin() as session:
        for document_id in ("a", "b"):
            add_catalog_row(session, document_id)
        index.writer.replace_chunks(
            session, {"a": [chunk(0, "shared word", 1)], "b": [chunk(0, "shared word", 2)]}
        )
    assert keyword(index, "shared", readers=("user:1",)) == []
    with sessions.begin() as session:
        index.writer.set_document_readers(session, {"a": ["user:1"]})
    assert keyword(index, "shared", readers=("user:1",)) == ["a"]
    assert keyword(index, "shared", readers=("public",)) == ["b"]
    with sessions.begin() as session:
        index.writer.set_source_readers(session, "upload", ["group:7"])
    assert sorted(keyword(index, "shared", readers=("group:7",))) == ["a", "b"]
    assert keyword(index, "shared", readers=("user:1",)) == []


def test_replace_embeddings_keeps_the_text_and_its_keyword_scores(
    index: DocumentIndex, sessions: sessionmaker[Session]
) -> None:
    with sessions.begin() as session:
        add_catalog_row(session, "a")
        index.writer.replace_chunks(session, {"a": [chunk(0, "orchard apples", 1)]})
    before = index.search(IndexQuery("apples", None, SearchMode.KEYWORD, 5))
    with sessions() as session:
        chunk_ids = [int(i) for i in session.scalars(text("SELECT id FROM chunks ORDER BY id"))]
    with sessions.begin() as session:
        changed = index.writer.replace_embeddings(session, ["a"], {chunk_ids[0]: unit(50)})
    assert changed == 1
    semantic = index.search(IndexQuery("x", unit(50), SearchMode.SEMANTIC, 1))
    assert semantic[0].score == pytest.approx(1.0, abs=1e-4)
    after = index.search(IndexQuery("apples", None, SearchMode.KEYWORD, 5))
    assert [(h.document_id, h.keyword_score) for h in after] == [
        (h.document_id, h.keyword_score) for h in before
    ]
