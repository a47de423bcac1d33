"""Searcher pages over a fake index: offsets, the next-page flag, the candidate pool's
steps, and rerank's head (the first RERANK_POOL * limit hits, whatever the page)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pytest

from tandem.index.chunk_writes import PostgresChunkWriter
from tandem.index.protocol import ChunkWriter, IndexedChunk, IndexHit, IndexQuery, SearchMode
from tandem.model_files import FloatArray
from tandem.search import InvalidQuery, Searcher, SearchQuery
from tandem.search.searcher import CANDIDATES, RERANK_POOL
from tandem.wire.model import TextType

HITS = 45


@dataclass
class RankingIndex:
    """A fixed ranking of HITS documents; records what it was asked."""

    asked: list[IndexQuery] = field(default_factory=list)

    def search(self, query: IndexQuery) -> list[IndexHit]:
        self.asked.append(query)
        ranking = [
            IndexHit(
                f"doc-{i:02d}",
                0,
                "T",
                "upload",
                f"doc-{i:02d}",
                f"text {i}",
                1 - i / 100,
                None,
                None,
            )
            for i in range(HITS)
        ]
        return ranking[query.offset : query.offset + query.limit]

    @property
    def writer(self) -> ChunkWriter:
        return PostgresChunkWriter()  # never called: these tests only search

    def replace_document(self, document_id: str, chunks: Sequence[IndexedChunk]) -> None: ...

    def delete_document(self, document_id: str) -> int:
        return 0

    def chunk_count(self, document_id: str | None = None) -> int:
        return HITS

    def chunks(self, document_id: str) -> list[IndexHit]:
        return []

    def close(self) -> None: ...


class ReversingReranker:
    """Scores a text's number: the reranker puts the retrieval order upside down."""

    def embed(self, texts: list[str], text_type: TextType) -> FloatArray:
        return np.ones((len(texts), 384), dtype=np.float32)

    def rerank(self, query: str, documents: list[str]) -> list[float]:
        return [float(d.split()[-1]) for d in documents]


def pages(searcher: Searcher, *, rerank: bool, limit: int = 10) -> list[list[str]]:
    found: list[list[str]] = []
    offset = 0
    while True:
        result = searcher.search(
            SearchQuery("q", SearchMode.KEYWORD, limit=limit, rerank=rerank, offset=offset)
        )
        found.append([h.document_id for h in result.hits])
        if not result.more:
            return found
        offset += limit


def test_pages_follow_on_and_the_last_says_so() -> None:
    searcher = Searcher(RankingIndex(), ReversingReranker(), max_query_chars=100)
    found = pages(searcher, rerank=False)
    assert [len(p) for p in found] == [10, 10, 10, 10, 5]
    assert [d for page in found for d in page] == [f"doc-{i:02d}" for i in range(HITS)]


def test_rerank_orders_the_same_head_whatever_the_page() -> None:
    searcher = Searcher(RankingIndex(), ReversingReranker(), max_query_chars=100)
    head = RERANK_POOL * 10
    expected = [f"doc-{i:02d}" for i in reversed(range(head))]
    expected += [f"doc-{i:02d}" for i in range(head, HITS)]  # past the head: retrieval order
    assert [d for page in pages(searcher, rerank=True) for d in page] == expected


@pytest.mark.parametrize(
    ("mode", "offset", "candidates"),
    [
        (SearchMode.HYBRID, 0, CANDIDATES[SearchMode.HYBRID]),
        (SearchMode.HYBRID, 30, CANDIDATES[SearchMode.HYBRID]),  # 41 hits: the first step
        (SearchMode.HYBRID, 40, 2 * CANDIDATES[SearchMode.HYBRID]),  # 51: the next
        (SearchMode.KEYWORD, 990, 11 * CANDIDATES[SearchMode.KEYWORD]),
    ],
)
def test_pages_ask_for_pools_in_steps(mode: SearchMode, offset: int, candidates: int) -> None:
    index = RankingIndex()
    Searcher(index, ReversingReranker(), max_query_chars=100).search(
        SearchQuery("q", mode, limit=10, offset=offset)
    )
    (asked,) = index.asked
    assert (asked.offset, asked.limit, asked.candidates) == (offset, 11, candidates)
    assert asked.group_by_document is True


@pytest.mark.parametrize("offset", [-1, 1001])
def test_offset_out_of_range_is_refused(offset: int) -> None:
    searcher = Searcher(RankingIndex(), ReversingReranker(), max_query_chars=100)
    with pytest.raises(InvalidQuery):
        searcher.search(SearchQuery("q", offset=offset))
