"""One search: query checks -> query embedding (inference server) -> index -> rerank.

Stages, as in the model engine: `prepare` checks the query, `retrieve` embeds it and asks
the index (BM25 + HNSW, fused), `rerank` optionally re-orders a wider pool with the
cross-encoder. When the inference server is down or not ready, search still answers:
keyword results, flagged `degraded`, never an error.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
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
from tandem.model_client import ModelServerError, ModelServerUnavailable, RerankNotAvailable
from tandem.model_files import FloatArray
from tandem.model_schemas import TextType

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


class InferenceClient(Protocol):
    """What search needs of the inference model server (tandem.model_client.ModelClient)."""

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


@dataclass(frozen=True, slots=True)
class SearchResult:
    query: str  # as searched (trimmed)
    mode: SearchMode  # the mode that answered: keyword when degraded
    hits: list[IndexHit]
    degraded: bool = False
    reranked: bool = False
    notice: str | None = None
    took_ms: float = 0.0


class Searcher:
    def __init__(
        self, index: DocumentIndex, inference: InferenceClient, *, max_query_chars: int
    ) -> None:
        self._index = index
        self._inference = inference
        self._max_query_chars = max_query_chars

    def search(self, query: SearchQuery) -> SearchResult:
        started = time.perf_counter()
        text = self.prepare(query.text)
        result = self.retrieve(replace(query, text=text))
        if query.rerank and result.hits and not result.degraded:
            result = self.rerank(result, query.limit)
        hits = result.hits[: query.limit]
        took = round((time.perf_counter() - started) * 1000, 2)
        return replace(result, hits=hits, took_ms=took)

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

    def retrieve(self, query: SearchQuery) -> SearchResult:
        pool = query.limit * RERANK_POOL if query.rerank else query.limit
        index_query = IndexQuery(
            text=query.text,
            vector=None,
            mode=query.mode,
            limit=pool,
            alpha=query.alpha,
            filters=query.filters,
            candidates=max(CANDIDATES[query.mode], pool),
        )
        if query.mode is SearchMode.KEYWORD:
            return SearchResult(query.text, query.mode, self._index.search(index_query))
        if query.mode is SearchMode.HYBRID:
            # The query is embedded while the index starts on its keywords.
            with ThreadPoolExecutor(1, thread_name_prefix="query-embedding") as embedding:
                pending = embedding.submit(self._embed, query.text)
                hits = self._index.search(replace(index_query, vector=pending))
                vector = pending.result()
        else:
            vector = self._embed(query.text)
            hits = self._index.search(replace(index_query, vector=vector))
        if vector is not None:
            return SearchResult(query.text, query.mode, hits)
        # Degraded: the index answered from keywords alone, as many as asked for.
        keyword_hits = hits[: query.limit]
        return SearchResult(
            query.text, SearchMode.KEYWORD, keyword_hits, degraded=True, notice=DEGRADED_NOTICE
        )

    def rerank(self, result: SearchResult, limit: int) -> SearchResult:
        hits = result.hits
        try:
            scores = self._inference.rerank(result.query, [h.text for h in hits])
        except (ModelServerUnavailable, RerankNotAvailable) as exc:
            log.warning("rerank_unavailable error=%s", exc)
            return replace(result, notice=RERANK_UNAVAILABLE_NOTICE)
        order = sorted(range(len(hits)), key=lambda i: -scores[i])
        reordered = [replace(hits[i], score=scores[i]) for i in order]
        return replace(result, hits=reordered[:limit], reranked=True)

    def _embed(self, text: str) -> FloatArray | None:
        try:
            vectors = self._inference.embed([text], TextType.QUERY)
        except (ModelServerUnavailable, ModelServerError) as exc:
            log.warning("query_embedding_unavailable error=%s", exc)
            return None
        return np.asarray(vectors[0], dtype=np.float32)
