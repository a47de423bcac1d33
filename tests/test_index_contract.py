"""The DocumentIndex contract. Every implementation runs this suite (PostgreSQL today)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from sqlalchemy.orm import Session, sessionmaker

from tandem.db import catalog
from tandem.index.fusion import Fusion
from tandem.index.postgres import PostgresIndex
from tandem.index.protocol import (
    DocumentIndex,
    IndexedChunk,
    IndexQuery,
    SearchFilters,
    SearchMode,
)
from tandem.model_files import FloatArray

AddDocument = Callable[[str], None]


def unit(seed: int) -> FloatArray:
    vector = np.random.default_rng(seed).normal(size=384).astype(np.float32)
    return vector / np.linalg.norm(vector)


def chunk(ordinal: int, body: str, seed: int, **extra: object) -> IndexedChunk:
    fields: dict[str, object] = {
        "title": "Title",
        "path": "source.txt",
        "content_type": "text/plain",
        "metadata": {},
    }
    fields.update(extra)
    return IndexedChunk(
        ordinal=ordinal,
        text=body,
        token_count=len(body.split()),
        embedding=unit(seed),
        **fields,  # type: ignore[arg-type]
    )


@pytest.fixture(params=[Fusion.LINEAR, Fusion.RRF], ids=["postgres-linear", "postgres-rrf"])
def index_and_catalog(
    request: pytest.FixtureRequest, empty_database: sessionmaker[Session]
) -> tuple[DocumentIndex, AddDocument]:
    sessions = empty_database

    def add_document(document_id: str) -> None:
        # The PostgreSQL index keeps chunks beside the catalog row they belong to.
        with sessions.begin() as session:
            catalog.upsert_document(
                session,
                catalog.DocumentInfo(document_id, "T", "s", "text/plain", {}, "h", 1),
            )

    return PostgresIndex(sessions, request.param), add_document


@pytest.fixture
def index(index_and_catalog: tuple[DocumentIndex, AddDocument]) -> DocumentIndex:
    return index_and_catalog[0]


@pytest.fixture
def add_document(index_and_catalog: tuple[DocumentIndex, AddDocument]) -> AddDocument:
    return index_and_catalog[1]


def test_replace_swaps_all_chunks(index: DocumentIndex, add_document: AddDocument) -> None:
    add_document("doc")
    index.replace_document("doc", [chunk(i, f"old body {i}", i) for i in range(3)])
    assert index.chunk_count("doc") == 3
    index.replace_document("doc", [chunk(0, "new first", 10), chunk(1, "new second", 11)])
    assert [c.text for c in index.chunks("doc")] == ["new first", "new second"]
    index.replace_document("doc", [chunk(0, "new first", 10), chunk(1, "new second", 11)])
    assert index.chunk_count("doc") == 2
    assert index.chunk_count() == 2


def test_concurrent_replaces_leave_one_copy(
    index: DocumentIndex, add_document: AddDocument
) -> None:
    add_document("raced")
    chunks = [chunk(i, f"body {i}", i) for i in range(20)]
    racers = 4
    start = threading.Barrier(racers)

    def replace() -> None:
        start.wait(10)  # all replaces begin together
        index.replace_document("raced", chunks)

    with ThreadPoolExecutor(racers) as pool:
        # .result() re-raises a replace that failed: every one must succeed, not just one.
        for future in [pool.submit(replace) for _ in range(racers)]:
            future.result(timeout=60)
    assert index.chunk_count("raced") == 20
    assert [c.ordinal for c in index.chunks("raced")] == list(range(20))


def test_delete(index: DocumentIndex, add_document: AddDocument) -> None:
    add_document("gone")
    add_document("kept")
    index.replace_document("gone", [chunk(0, "zebra stripes", 1)])
    index.replace_document("kept", [chunk(0, "zebra crossing", 2)])
    assert index.delete_document("gone") == 1
    assert index.delete_document("gone") == 0
    hits = index.search(IndexQuery("zebra", None, SearchMode.KEYWORD, 10))
    assert [h.document_id for h in hits] == ["kept"]


@pytest.fixture
def corpus(index: DocumentIndex, add_document: AddDocument) -> DocumentIndex:
    documents = {
        "passwords": ("How to reset a forgotten password from the login page", 1, "a.md", "hr"),
        "revenue": ("Quarterly revenue grew twelve percent over the year", 2, "b.pdf", "fin"),
        "kubernetes": ("Pods are scheduled onto nodes by the kube scheduler", 3, "c.txt", "ops"),
    }
    for document_id, (body, seed, source, team) in documents.items():
        add_document(document_id)
        index.replace_document(
            document_id,
            [
                chunk(
                    0,
                    body,
                    seed,
                    path=source,
                    content_type="application/pdf" if source.endswith("pdf") else "text/plain",
                    metadata={"team": team},
                )
            ],
        )
    return index


def test_keyword_mode_matches_words(corpus: DocumentIndex) -> None:
    hits = corpus.search(IndexQuery("reset password", unit(99), SearchMode.KEYWORD, 5))
    assert [h.document_id for h in hits] == ["passwords"]
    assert hits[0].keyword_score is not None
    assert hits[0].keyword_score > 0


def test_semantic_mode_ranks_by_vector(corpus: DocumentIndex) -> None:
    hits = corpus.search(IndexQuery("unrelated words", unit(2), SearchMode.SEMANTIC, 3))
    assert hits[0].document_id == "revenue"
    assert hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert len(hits) == 3
    assert hits[0].score >= hits[1].score >= hits[2].score


def test_hybrid_blends_both_signals(corpus: DocumentIndex) -> None:
    # The words point at one document, the vector at another: alpha decides.
    words, vector = "kube scheduler pods", unit(1)
    semantic_first = corpus.search(IndexQuery(words, vector, SearchMode.HYBRID, 3, alpha=0.95))
    keyword_first = corpus.search(IndexQuery(words, vector, SearchMode.HYBRID, 3, alpha=0.05))
    assert semantic_first[0].document_id == "passwords"
    assert keyword_first[0].document_id == "kubernetes"


def test_without_a_vector_search_is_keyword_only(corpus: DocumentIndex) -> None:
    hits = corpus.search(IndexQuery("quarterly revenue", None, SearchMode.HYBRID, 5))
    assert [h.document_id for h in hits] == ["revenue"]
    assert hits[0].vector_score is None


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (SearchFilters(document_ids=["revenue", "kubernetes"]), {"revenue", "kubernetes"}),
        (SearchFilters(sources=["upload"]), {"passwords", "revenue", "kubernetes"}),
        (SearchFilters(content_types=["application/pdf"]), {"revenue"}),
        (SearchFilters(metadata={"team": "ops"}), {"kubernetes"}),
        (SearchFilters(metadata={"team": "nobody"}), set()),
    ],
)
def test_filters_apply_in_every_mode(
    corpus: DocumentIndex, filters: SearchFilters, expected: set[str]
) -> None:
    for mode in SearchMode:
        query = IndexQuery("password revenue pods", unit(7), mode, 10, filters=filters)
        assert {h.document_id for h in corpus.search(query)} == expected, mode


def test_limit_is_respected(corpus: DocumentIndex) -> None:
    assert len(corpus.search(IndexQuery("anything", unit(5), SearchMode.SEMANTIC, 2))) == 2
