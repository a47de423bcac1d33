"""One search: query checks -> query embedding (inference server) -> index -> rerank.

Stages, as in the model engine: `prepare` checks the query, `retrieve` embeds it and asks
the index (BM25 + HNSW, fused; one hit per document unless asked for chunks), `rerank`
optionally re-orders a wider pool with the cross-encoder. When the inference server is
down or not ready, search still answers: keyword results, flagged `degraded`, never an
error.

Pages: `offset` skips that many hits of the ranking. The index ranks a pool sized in
steps of CANDIDATES (not per page), so neighbouring pages are cut from the same ranking.
With rerank, the cross-encoder orders the first RERANK_POOL * limit hits, whatever the
page; pages past them are in retrieval order (the same ranking's continuation).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np

from tandem.index.protocol import (
    DEFAULT_HYBRID_ALPHA,
    DocumentIndex,
    IndexHit,
    IndexQuery,
    SearchFilters,
    SearchMode,
)
from tandem.index.stage_timings import Stage, StageTimings
from tandem.model_client.client import ModelServerError, ModelServerUnavailable, RerankNotAvailable
from tandem.model_files import FloatArray
from tandem.wire.model import TextType

log = logging.getLogger(__name__)

DEGRADED_NOTICE = (
    "The inference model server is unavailable, so these are keyword-only results; "
    "semantic ranking returns when it is back."
)
RERANK_UNAVAILABLE_NOTICE = "Reranking is unavailable; results are in retrieval order."
RERANK_POOL = 3  # rerank this many times `limit` candidates
# Candidates asked of each retriever. Hybrid pools two retrievers' lists, so 50 each
# gives it a pool of up to 100 like a single mode's; on the man-page set 50 or 100 per
# retriever gave the same hybrid MRR@10, while semantic alone lost 0.012 at 50 (the
# opening-chunk blend re-ranks within the pool).
CANDIDATES = {SearchMode.KEYWORD: 100, SearchMode.SEMANTIC: 100, SearchMode.HYBRID: 50}
MAX_OFFSET = 1000


class InferenceClient(Protocol):
    """What search needs of the inference model server (tandem.model_client.client.ModelClient)."""

    def embed(self, texts: list[str], text_type: TextType) -> FloatArray: ...

    def rerank(self, query: str, documents: list[str]) -> list[float]: ...


class InvalidQuery(ValueError):
    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class SearchQuery:
    text: str
    mode: SearchMode = SearchMode.HYBRID
    limit: int = 10
    alpha: float = DEFAULT_HYBRID_ALPHA
    rerank: bool = False
    filters: SearchFilters = field(default_factory=SearchFilters)
    group_by_document: bool = True  # one hit per document: its best chunk
    offset: int = 0


@dataclass(frozen=True, slots=True)
class SearchResult:
    query: str  # as searched (trimmed)
    mode: SearchMode  # the mode that answered: keyword when degraded
    hits: list[IndexHit]
    degraded: bool = False
    reranked: bool = False
    notice: str | None = None
    took_ms: float = 0.0
    more: bool = False  # the ranking goes on past this page (at offset + limit)


def candidates(mode: SearchMode, hits: int) -> int:
    """Candidates per retriever for a ranking at least `hits` long: CANDIDATES[mode], or
    the next multiple of it, so that pages in one step share their pool and ranking."""
    step = CANDIDATES[mode]
    return step * max(1, math.ceil(hits / step))


class Searcher:
    def __init__(
        self, index: DocumentIndex, inference: InferenceClient, *, max_query_chars: int
    ) -> None:
        self._index = index
        self._inference = inference
        self._max_query_chars = max_query_chars

    def search(self, query: SearchQuery, timings: StageTimings | None = None) -> SearchResult:
        """The page of hits; `timings` (the caller's) gets each stage's time."""
        started = time.perf_counter()
        timings = timings or StageTimings()
        query = replace(query, text=self.prepare(query.text))
        if not 0 <= query.offset <= MAX_OFFSET:
            raise InvalidQuery(f"offset must be 0 to {MAX_OFFSET}", "validation_error")
        reranked_hits = RERANK_POOL * query.limit
        # One hit more than the page shows: whether there is a next page.
        if query.rerank and query.offset < reranked_hits:
            # The page lies in the reranked head: rank all of it, whatever the page.
            shown = max(reranked_hits, query.offset + query.limit) + 1
            result = self.retrieve(query, 0, shown, timings)
            if result.hits and not result.degraded:
                with timings.stage(Stage.RERANK):
                    result = self.rerank(result, reranked_hits)
            hits = result.hits[query.offset : query.offset + query.limit + 1]
        else:
            result = self.retrieve(query, query.offset, query.limit + 1, timings)
            hits = result.hits
        took = round((time.perf_counter() - started) * 1000, 2)
        more = len(hits) > query.limit
        return replace(result, hits=hits[: query.limit], more=more, took_ms=took)

    def prepare(self, text: str) -> str:
        text = text.strip()
        if not text:
            raise InvalidQuery("query must not be blank", "validation_error")
        if len(text) > self._max_query_chars:
            raise InvalidQuery(
                f"query is {len(text)} characters; at most {self._max_query_chars}",
                "query_too_long",
            )
        return text

    def retrieve(
        self, query: SearchQuery, offset: int, limit: int, timings: StageTimings | None = None
    ) -> SearchResult:
        """The index's hits from `offset`, at most `limit`."""
        timings = timings or StageTimings()
        index_query = IndexQuery(
            text=query.text,
            vector=None,
            mode=query.mode,
            limit=limit,
            alpha=query.alpha,
            filters=query.filters,
            candidates=candidates(query.mode, offset + limit),
            group_by_document=query.group_by_document,
            offset=offset,
            timings=timings,
        )
        if query.mode is SearchMode.KEYWORD:
            return SearchResult(query.text, query.mode, self._index.search(index_query))
        embedded: list[FloatArray | None] = []

        def embed() -> FloatArray | None:
            embedded.append(self._embed(query.text, timings))
            return embedded[-1]

        # The index embeds the query while it connects (PostgresIndex.search).
        hits = self._index.search(replace(index_query, embed=embed))
        if embedded and embedded[0] is not None:
            return SearchResult(query.text, query.mode, hits)
        # Degraded: the index answered from keywords alone.
        return SearchResult(
            query.text, SearchMode.KEYWORD, hits, degraded=True, notice=DEGRADED_NOTICE
        )

    def rerank(self, result: SearchResult, head: int) -> SearchResult:
        """The first `head` hits in the cross-encoder's order, the rest as they were."""
        hits = result.hits[:head]
        try:
            scores = self._inference.rerank(result.query, [h.text for h in hits])
        except (ModelServerUnavailable, RerankNotAvailable) as exc:
            log.warning("rerank_unavailable error=%s", exc)
            return replace(result, notice=RERANK_UNAVAILABLE_NOTICE)
        order = sorted(range(len(hits)), key=lambda i: -scores[i])
        reordered = [replace(hits[i], score=scores[i]) for i in order]
        return replace(result, hits=reordered + result.hits[head:], reranked=True)

    def _embed(self, text: str, timings: StageTimings) -> FloatArray | None:
        try:
            with timings.stage(Stage.EMBED):
                vectors = self._inference.embed([text], TextType.QUERY)
        except (ModelServerUnavailable, ModelServerError) as exc:
            log.warning("query_embedding_unavailable error=%s", exc)
            return None
        return np.asarray(vectors[0], dtype=np.float32)
