"""Search: query -> inference model server (embedding) -> index (hybrid) -> optional rerank.

When the inference server is down or not ready, search still answers: keyword results,
flagged `degraded`, never an error.
"""

from __future__ import annotations

import logging
import time

import numpy as np
from fastapi import APIRouter

from tandem.api.state import ApiState, Authorized, StateDep
from tandem.http_errors import ApiError
from tandem.index.highlight import snippet
from tandem.index.protocol import (
    DEFAULT_HYBRID_ALPHA,
    IndexHit,
    IndexQuery,
    SearchFilters,
    SearchMode,
    Vector,
)
from tandem.model_client import ModelServerError, ModelServerUnavailable, RerankNotAvailable
from tandem.schemas import SearchHitOut, SearchModeName, SearchRequest, SearchResponse, TextType

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api", tags=["search"], dependencies=[Authorized])

DEGRADED_NOTICE = (
    "The inference model server is unavailable, so these are keyword-only results; "
    "semantic ranking returns when it is back."
)
RERANK_POOL = 3  # rerank this many times `limit` candidates


def _embed_query(state: ApiState, query: str) -> Vector | None:
    try:
        vectors = state.inference.embed([query], TextType.QUERY)
        return np.asarray(vectors[0], dtype=np.float32)
    except (ModelServerUnavailable, ModelServerError) as exc:
        log.warning("query_embedding_unavailable error=%s", exc)
        return None


def _rerank(state: ApiState, query: str, hits: list[IndexHit]) -> list[IndexHit] | None:
    try:
        scores = state.inference.rerank(query, [h.text for h in hits])
    except (ModelServerUnavailable, RerankNotAvailable) as exc:
        log.warning("rerank_unavailable error=%s", exc)
        return None
    order = sorted(range(len(hits)), key=lambda i: -scores[i])
    return [_rescored(hits[i], scores[i]) for i in order]


def _rescored(hit: IndexHit, score: float) -> IndexHit:
    return IndexHit(
        hit.document_id,
        hit.ordinal,
        hit.title,
        hit.source,
        hit.text,
        score,
        hit.vector_score,
        hit.keyword_score,
    )


@router.post("/search", response_model=SearchResponse)
def search(body: SearchRequest, state: StateDep) -> SearchResponse:
    started = time.perf_counter()
    query = body.query.strip()
    if not query:
        raise ApiError(422, "query must not be blank", "validation_error")
    if len(query) > state.settings.max_query_chars:
        raise ApiError(
            422,
            f"query is {len(query)} characters; at most {state.settings.max_query_chars}",
            "query_too_long",
        )
    mode = SearchMode(body.mode.value)
    vector = None if mode is SearchMode.KEYWORD else _embed_query(state, query)
    degraded = mode is not SearchMode.KEYWORD and vector is None
    effective = SearchMode.KEYWORD if degraded else mode
    filters = body.filters
    pool = body.limit * RERANK_POOL if body.rerank and not degraded else body.limit
    hits = state.index.search(
        IndexQuery(
            text=query,
            vector=vector,
            mode=effective,
            limit=pool,
            alpha=body.alpha if body.alpha is not None else DEFAULT_HYBRID_ALPHA,
            filters=SearchFilters(
                document_ids=filters.document_ids,
                sources=filters.sources,
                content_types=filters.content_types,
                metadata=dict(filters.metadata),
            )
            if filters
            else SearchFilters(),
            candidates=max(100, pool),
        )
    )
    notice = DEGRADED_NOTICE if degraded else None
    reranked = False
    if body.rerank and hits and not degraded:
        ordered = _rerank(state, query, hits)
        if ordered is None:
            notice = "Reranking is unavailable; results are in retrieval order."
        else:
            hits, reranked = ordered, True
    return SearchResponse(
        query=query,
        mode=SearchModeName(effective.value),
        degraded=degraded,
        notice=notice,
        reranked=reranked,
        took_ms=round((time.perf_counter() - started) * 1000, 2),
        results=[
            SearchHitOut(
                document_id=h.document_id,
                chunk=h.ordinal,
                title=h.title,
                source=h.source,
                snippet=snippet(h.text, query),
                score=round(h.score, 6),
            )
            for h in hits[: body.limit]
        ],
    )
