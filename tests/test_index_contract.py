"""The DocumentIndex contract. Every implementation runs this suite (PostgreSQL today)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Protocol

import numpy as np
import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from tandem.db import catalog
from tandem.index.fusion import Fusion
from tandem.index.postgres import PostgresIndex
from tandem.index.protocol import (
    DocumentIndex,
    IndexedChunk,
    IndexHit,
    IndexQuery,
    SearchFilters,
    SearchMode,
)
from tandem.model_files import FloatArray


class AddDocument(Protocol):
    def __call__(
        self,
        document_id: str,
        *,
        path: str = "source.txt",
        source: str = "upload",
        updated_at: datetime | None = None,
    ) -> None: ...


def unit(seed: int) -> FloatArray:
    vector = np.random.default_rng(seed).normal(size=384).astype(np.float32)
    return vector / np.linalg.norm(vector)


def chunk(ordinal: int, body: str, seed: int, **extra: object) -> IndexedChunk:
    fields: dict[str, object] = {
        "title": "Title",
        "path": "source.txt",
        "content_type": "text/plain",
        "metadata": {},
        "embedding": unit(seed),
    }
    fields.update(extra)
    return IndexedChunk(
        ordinal=ordinal,
        text=body,
        token_count=len(body.split()),
        **fields,  # type: ignore[arg-type]
    )


@pytest.fixture(params=[Fusion.LINEAR, Fusion.RRF], ids=["postgres-linear", "postgres-rrf"])
def index_and_catalog(
    request: pytest.FixtureRequest, empty_database: sessionmaker[Session]
) -> tuple[DocumentIndex, AddDocument]:
    sessions = empty_database

    def add_document(
        document_id: str,
        *,
        path: str = "source.txt",  # as `chunk` gives its chunks: a document's are its own
        source: str = "upload",
        updated_at: datetime | None = None,
    ) -> None:
        # The PostgreSQL index keeps chunks beside the catalog row they belong to.
        with sessions.begin() as session:
            session.execute(
                text(
                    "INSERT INTO sources (name, kind) VALUES (:s, 'folder') ON CONFLICT DO NOTHING"
                ),
                {"s": source},
            )
            catalog.upsert_document(
                session,
                catalog.DocumentInfo(document_id, "T", path, "text/plain", {}, "h", 1, 0, source),
            )
            if updated_at is not None:
                session.execute(
                    text("UPDATE documents SET updated_at = :t WHERE id = :id"),
                    {"t": updated_at, "id": document_id},
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
    """Each racer writes its own version (its own texts, its own length): afterwards the
    document holds exactly one racer's chunks, none mixed in from another and no doubles,
    and its keyword postings are that racer's alone."""
    add_document("raced")
    racers = 4
    versions = [
        [chunk(i, f"racer{r} body {i}", 100 * r + i) for i in range(12 + 3 * r)]
        for r in range(racers)
    ]
    start = threading.Barrier(racers)

    def replace(r: int) -> None:
        start.wait(10)  # all replaces begin together
        index.replace_document("raced", versions[r])

    with ThreadPoolExecutor(racers) as pool:
        # .result() re-raises a replace that failed: every one must succeed, not just one.
        for future in [pool.submit(replace, r) for r in range(racers)]:
            future.result(timeout=60)
    stored = index.chunks("raced")
    winners = {c.text.split()[0] for c in stored}
    assert len(winners) == 1, winners
    winner = int(winners.pop().removeprefix("racer"))
    assert [c.text for c in stored] == [c.text for c in versions[winner]]
    assert [c.ordinal for c in stored] == list(range(len(versions[winner])))
    assert index.chunk_count() == len(versions[winner])
    for r in range(racers):
        hits = index.search(
            IndexQuery(f"racer{r}", None, SearchMode.KEYWORD, 50, group_by_document=False)
        )
        assert len(hits) == (len(versions[r]) if r == winner else 0), r


def test_delete(index: DocumentIndex, add_document: AddDocument) -> None:
    add_document("gone")
    add_document("kept")
    index.replace_document("gone", [chunk(0, "zebra stripes", 1)])
    index.replace_document("kept", [chunk(0, "zebra crossing", 2)])
    assert index.delete_document("gone") == 1
    assert index.delete_document("gone") == 0
    hits = index.search(IndexQuery("zebra", None, SearchMode.KEYWORD, 10))
    assert [h.document_id for h in hits] == ["kept"]


@pytest.mark.parametrize("mode", [SearchMode.KEYWORD, SearchMode.SEMANTIC, SearchMode.HYBRID])
def test_a_deleted_document_is_found_by_no_mode(
    index: DocumentIndex, add_document: AddDocument, mode: SearchMode
) -> None:
    """The vector of a deleted chunk is gone with its postings: semantic search given that
    very vector finds only what is left."""
    add_document("gone")
    add_document("kept")
    index.replace_document("gone", [chunk(0, "zebra stripes", 1)])
    index.replace_document("kept", [chunk(0, "zebra crossing", 2)])
    assert index.delete_document("gone") == 1
    vector = None if mode is SearchMode.KEYWORD else unit(1)
    hits = index.search(IndexQuery("zebra stripes", vector, mode, 10))
    assert [h.document_id for h in hits] == ["kept"]


@pytest.mark.parametrize("mode", [SearchMode.KEYWORD, SearchMode.SEMANTIC, SearchMode.HYBRID])
def test_a_shorter_version_leaves_nothing_of_the_longer_one(
    index: DocumentIndex, add_document: AddDocument, mode: SearchMode
) -> None:
    """A re-upload with fewer chunks: the tail of the old version is found by no mode, by
    its words or by its vectors, and the new version's chunks are all that is counted."""
    add_document("doc")
    index.replace_document("doc", [chunk(i, f"version one part{i}", 10 + i) for i in range(6)])
    index.replace_document("doc", [chunk(0, "version two part0", 30)])
    assert index.chunk_count("doc") == 1
    for old in range(1, 6):
        vector = None if mode is SearchMode.KEYWORD else unit(10 + old)
        query = IndexQuery(f"part{old}", vector, mode, 10, group_by_document=False)
        assert [h.text for h in index.search(query)] in ([], ["version two part0"]), old
    keyword = IndexQuery("part1", None, SearchMode.KEYWORD, 10, group_by_document=False)
    assert index.search(keyword) == []


UPDATED = {
    "passwords": datetime(2020, 1, 1, tzinfo=UTC),
    "revenue": datetime(2023, 6, 1, 12, tzinfo=UTC),
    "kubernetes": datetime(2024, 3, 1, tzinfo=UTC),
}


@pytest.fixture
def corpus(index: DocumentIndex, add_document: AddDocument) -> DocumentIndex:
    # Paths with LIKE's wildcards in them: a prefix filter must take them literally.
    documents = {
        "passwords": ("How to reset a forgotten password from the login page", 1, "team/hr_a.md"),
        "revenue": ("Quarterly revenue grew twelve percent over the year", 2, "team/hr%/b.pdf"),
        "kubernetes": ("Pods are scheduled onto nodes by the kube scheduler", 3, "ops/c.txt"),
    }
    teams = {"passwords": "hr", "revenue": "fin", "kubernetes": "ops"}
    for document_id, (body, seed, path) in documents.items():
        source = "wiki" if document_id == "kubernetes" else "upload"
        add_document(document_id, path=path, source=source, updated_at=UPDATED[document_id])
        index.replace_document(
            document_id,
            [
                chunk(
                    0,
                    body,
                    seed,
                    path=path,
                    source=source,
                    content_type="application/pdf" if path.endswith("pdf") else "text/plain",
                    metadata={"team": teams[document_id]},
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
        (SearchFilters(sources=["upload"]), {"passwords", "revenue"}),
        (SearchFilters(sources=["wiki", "upload"]), {"passwords", "revenue", "kubernetes"}),
        (SearchFilters(content_types=["application/pdf"]), {"revenue"}),
        (SearchFilters(metadata={"team": "ops"}), {"kubernetes"}),
        (SearchFilters(metadata={"team": "nobody"}), set()),
        (SearchFilters(path_prefix="team/"), {"passwords", "revenue"}),
        (SearchFilters(path_prefix="team/hr_"), {"passwords"}),  # "_" is no wildcard
        (SearchFilters(path_prefix="team/hr%"), {"revenue"}),  # nor "%"
        (SearchFilters(path_prefix="ops/c.txt"), {"kubernetes"}),
        (SearchFilters(path_prefix="Team/"), set()),
        (SearchFilters(updated_since=datetime(2023, 1, 1, tzinfo=UTC)), {"revenue", "kubernetes"}),
        (SearchFilters(updated_since=UPDATED["revenue"]), {"revenue", "kubernetes"}),  # at: in
        (SearchFilters(updated_since=datetime(2030, 1, 1, tzinfo=UTC)), set()),
        # Filters together narrow further.
        (
            SearchFilters(path_prefix="team/", updated_since=datetime(2023, 1, 1, tzinfo=UTC)),
            {"revenue"},
        ),
        (SearchFilters(sources=["wiki"], content_types=["application/pdf"]), set()),
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


# --- results by document: one hit per document, pages ---------------------------------

QUERY = "heron wetland"
LONG_CHUNKS = 50
BEST_CHUNK = 7  # the long document's best chunk for QUERY and QUERY_VECTOR


def toward(query: FloatArray, cosine: float, seed: int) -> FloatArray:
    """A unit vector at about `cosine` to the unit vector `query`."""
    other = unit(seed)
    other -= float(other @ query) * query
    other /= np.linalg.norm(other)
    vector: FloatArray = (cosine * query + np.sqrt(1 - cosine * cosine) * other).astype(np.float32)
    return vector


QUERY_VECTOR = unit(1000)


@pytest.fixture
def library(index: DocumentIndex, add_document: AddDocument) -> DocumentIndex:
    """One long document whose 50 chunks all outrank every other chunk in both
    retrievers, and 24 short ones (1 or 2 chunks): every chunk matches the query's words.
    86 chunks in all, so a pool of 100 per retriever holds every chunk."""
    # The short ones first and the long one's chunks not too alike: HNSW's graph then
    # reaches every chunk (outliers inserted after a tight cluster can end up unlinked).
    for d in range(24):
        add_document(f"short-{d:02d}")
        chunks = [
            chunk(
                i,
                f"a heron seen on note {d} " + "wetland " * (1 + (d + i) % 3),
                0,
                embedding=toward(QUERY_VECTOR, 0.1 + 0.015 * d - 0.05 * i, 100 + 2 * d + i),
            )
            for i in range(1 + d % 2)
        ]
        index.replace_document(f"short-{d:02d}", chunks)
    add_document("long")
    index.replace_document(
        "long",
        [
            chunk(
                i,
                "heron wetland " * (6 if i == BEST_CHUNK else 4) + f"part {i}",
                0,
                embedding=QUERY_VECTOR
                if i == BEST_CHUNK
                else toward(QUERY_VECTOR, 0.6 + 0.002 * i, i),
            )
            for i in range(LONG_CHUNKS)
        ],
    )
    return index


def ask(index: DocumentIndex, mode: SearchMode, limit: int, **options: object) -> list[IndexHit]:
    query = IndexQuery(QUERY, QUERY_VECTOR, mode, limit, **options)  # type: ignore[arg-type]
    return index.search(query)


def keys(hits: list[IndexHit]) -> list[tuple[str, int]]:
    return [(h.document_id, h.ordinal) for h in hits]


def by_document(hits: list[IndexHit]) -> list[IndexHit]:
    """Each document's first hit, in order."""
    first: dict[str, IndexHit] = {}
    for hit in hits:
        first.setdefault(hit.document_id, hit)
    return list(first.values())


@pytest.mark.parametrize("mode", list(SearchMode))
@pytest.mark.parametrize("candidates", [100, 10], ids=["pool-holds-all", "pool-too-small"])
def test_one_hit_per_document_its_best_chunk(
    library: DocumentIndex, mode: SearchMode, candidates: int
) -> None:
    """Ten documents when ten match, though one document's 50 chunks rank above all others:
    with a pool too small to hold ten documents, retrieval asks for more."""
    grouped = ask(library, mode, 10, candidates=candidates)
    assert len({h.document_id for h in grouped}) == len(grouped) == 10
    assert (grouped[0].document_id, grouped[0].ordinal) == ("long", BEST_CHUNK)
    every_chunk = ask(library, mode, 200, candidates=200, group_by_document=False)
    assert [h.document_id for h in every_chunk[:LONG_CHUNKS]] == ["long"] * LONG_CHUNKS
    # The same hits, scores included, as the chunk ranking's first hit of each document.
    best = by_document(every_chunk)[:10]
    assert keys(grouped) == keys(best)
    assert [h.score for h in grouped] == pytest.approx([h.score for h in best])
    assert grouped[0].path == "source.txt" and grouped[0].source == "upload"


@pytest.mark.parametrize("mode", list(SearchMode))
@pytest.mark.parametrize("grouped", [True, False], ids=["documents", "chunks"])
def test_pages_follow_on_without_overlap_or_gap(
    library: DocumentIndex, mode: SearchMode, grouped: bool
) -> None:
    size = 7 if grouped else 20
    whole = ask(library, mode, 100, group_by_document=grouped)
    assert len(whole) == (25 if grouped else 86)
    pages = [
        ask(library, mode, size, offset=offset, group_by_document=grouped)
        for offset in range(0, len(whole) + size, size)
    ]
    assert [len(p) for p in pages][-2:] == [len(whole) % size, 0]  # a short page, then none
    assert [k for page in pages for k in keys(page)] == keys(whole)


@pytest.mark.parametrize("mode", list(SearchMode))
def test_filters_narrow_grouped_results(library: DocumentIndex, mode: SearchMode) -> None:
    only = ask(library, mode, 10, filters=SearchFilters(document_ids=["long", "short-03"]))
    assert [h.document_id for h in only] == ["long", "short-03"]
    assert ask(library, mode, 10, filters=SearchFilters(path_prefix="elsewhere/")) == []
