"""POST /api/search: a thin adapter over tandem.search.Searcher."""

from __future__ import annotations

from fastapi import APIRouter

from tandem.api.state import Authorized, StateDep
from tandem.api_schemas import SearchHitOut, SearchRequest, SearchResponse
from tandem.http_errors import ApiError
from tandem.index.highlight import snippet
from tandem.index.protocol import DEFAULT_HYBRID_ALPHA, SearchFilters
from tandem.search import InvalidQuery, Searcher, SearchQuery

router = APIRouter(prefix="/api", tags=["search"], dependencies=[Authorized])


def _filters(body: SearchRequest) -> SearchFilters:
    if body.filters is None:
        return SearchFilters()
    return SearchFilters(
        document_ids=body.filters.document_ids,
        sources=body.filters.sources,
        content_types=body.filters.content_types,
        metadata=dict(body.filters.metadata),
    )


@router.post("/search", response_model=SearchResponse)
def search(body: SearchRequest, state: StateDep) -> SearchResponse:
    searcher = Searcher(
        state.index, state.inference, max_query_chars=state.settings.max_query_chars
    )
    query = SearchQuery(
        text=body.query,
        mode=body.mode,
        limit=body.limit,
        alpha=body.alpha if body.alpha is not None else DEFAULT_HYBRID_ALPHA,
        rerank=body.rerank,
        filters=_filters(body),
    )
    try:
        result = searcher.search(query)
    except InvalidQuery as exc:
        raise ApiError(422, str(exc), exc.code) from exc
    return SearchResponse(
        query=result.query,
        mode=result.mode,
        degraded=result.degraded,
        notice=result.notice,
        reranked=result.reranked,
        took_ms=result.took_ms,
        results=[
            SearchHitOut(
                document_id=h.document_id,
                chunk=h.ordinal,
                title=h.title,
                source=h.source,
                path=h.path,
                snippet=snippet(h.text, result.query),
                score=round(h.score, 6),
            )
            for h in result.hits
        ],
    )
