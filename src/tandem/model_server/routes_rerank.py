"""Cross-encoder reranking: served by the inference role only."""

from __future__ import annotations

import numpy as np
from fastapi import APIRouter

from tandem.model_files import FloatArray
from tandem.model_server.engine import Engines, RerankEngine
from tandem.model_server.routes_embed import (
    check_model,
    check_texts,
    engine_errors,
    refuse_cloud_provider,
)
from tandem.model_server.state import EnginesDep, FastJSONResponse, StateDep
from tandem.wire.errors import ApiError, error_responses
from tandem.wire.model import (
    CrossEncoderRequest,
    CrossEncoderResponse,
    TEIRank,
    TEIRerankRequest,
)

RERANK_PATHS = ("/rerank", "/encoder/cross-encoder-scores")

RERANK_ERRORS = error_responses(
    400, 404, 413, 422, 429, 501, 503, s404="Model not served (strict model names only)"
)
router = APIRouter(responses=RERANK_ERRORS)


def sigmoid(logits: FloatArray) -> FloatArray:
    # Matches sentence-transformers' CrossEncoder default for single-logit models.
    return np.asarray(1.0 / (1.0 + np.exp(-logits)), dtype=np.float32)


def rerank_engine(engines: Engines) -> RerankEngine:
    if engines.rerank is None:
        raise ApiError(
            501,
            "no reranker is configured on this server: prepare one with "
            "`tandem models prepare-reranker --from <dir>` and set TANDEM_RERANK_MODEL",
            "reranker_not_configured",
        )
    return engines.rerank


async def run_scores(
    engines: Engines, query: str, documents: list[str], truncate: bool = True
) -> FloatArray:
    engine = rerank_engine(engines)
    with engine_errors():
        return await engine.score(query, documents, truncate=truncate)


def check_query(query: str) -> None:
    if not query or query.isspace():
        raise ApiError(400, "query is an empty string", "invalid_request")


@router.post("/encoder/cross-encoder-scores", response_model=CrossEncoderResponse, tags=["onyx"])
async def onyx_scores(
    body: CrossEncoderRequest, engines: EnginesDep, state: StateDep
) -> FastJSONResponse:
    refuse_cloud_provider(body.provider_type, "rerank")
    check_query(body.query)
    check_texts(body.documents, state.settings.max_items_per_request, "documents")
    if body.model_name:
        check_model(body.model_name, rerank_engine(engines).name, state.settings.strict_model_name)
    logits = await run_scores(engines, body.query, body.documents)
    return FastJSONResponse({"scores": sigmoid(logits)})


@router.post("/rerank", response_model=list[TEIRank], tags=["tei"])
async def tei_rerank(
    body: TEIRerankRequest, engines: EnginesDep, state: StateDep
) -> FastJSONResponse:
    check_query(body.query)
    check_texts(body.texts, state.settings.max_items_per_request, "texts")
    logits = await run_scores(engines, body.query, body.texts, body.truncate)
    scores = logits if body.raw_scores else sigmoid(logits)
    order = np.argsort(-scores, kind="stable")
    ranks = [
        {"index": int(i), "score": float(scores[i])}
        | ({"text": body.texts[i]} if body.return_text else {})
        for i in order
    ]
    return FastJSONResponse(ranks)


async def _served_by_inference() -> None:
    raise ApiError(
        404,
        "reranking is served by the inference model server (MODEL_SERVER_HOST:MODEL_SERVER_PORT); "
        "this is the indexing model server (INDEXING_ONLY=true)",
        "wrong_role",
    )


def wrong_role_router() -> APIRouter:
    """What the indexing role mounts at the rerank paths: a 404 that names the right server."""
    gate = APIRouter()
    for path in RERANK_PATHS:
        gate.add_api_route(path, _served_by_inference, methods=["POST"], include_in_schema=False)
    return gate
