"""Embedding endpoints in three wire shapes over one engine call."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from pydantic import BaseModel

from tandem.model_files import FloatArray
from tandem.model_server.engine import Embedded, InputTooLong, l2_normalize
from tandem.model_server.scheduler import QueueFull, SchedulerStopped
from tandem.model_server.state import (
    EnginesDep,
    FastJSONResponse,
    StateDep,
    get_state,
    ready_engines,
)
from tandem.wire.errors import ApiError, error_responses, parse_body
from tandem.wire.model import (
    EmbedRequest,
    EmbedResponse,
    OpenAIEmbeddingRequest,
    OpenAIEmbeddingResponse,
    TEIEmbedRequest,
    TextType,
)

# Every embedding endpoint can answer these, besides 200.
EMBED_ERRORS = error_responses(
    400, 404, 413, 422, 429, 503, s404="Model not served (strict model names only)"
)
router = APIRouter(responses=EMBED_ERRORS)


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema with its local `$defs` references inlined, as OpenAPI
    documents a request body given through `openapi_extra`."""
    schema = model.model_json_schema()
    definitions = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return resolve(definitions[ref.removeprefix("#/$defs/")]) | {
                    k: v for k, v in node.items() if k != "$ref"
                }
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved


def check_texts(texts: list[str], max_items: int, field: str) -> None:
    if not texts:
        raise ApiError(400, f"{field} must not be empty", "invalid_request")
    if len(texts) > max_items:
        raise ApiError(
            413,
            f"{field} has {len(texts)} items; at most {max_items} per request",
            "too_many_items",
        )
    for index, text in enumerate(texts):
        if not text or text.isspace():
            raise ApiError(400, f"{field}[{index}] is an empty string", "invalid_request")


@contextmanager
def engine_errors() -> Iterator[None]:
    """The one mapping of an engine call's failures to HTTP errors (embed and rerank)."""
    try:
        yield
    except InputTooLong as exc:
        raise ApiError(413, f"{exc}; send truncate=true to cut them", "input_too_long") from exc
    except QueueFull as exc:
        raise ApiError(429, str(exc), "overloaded", {"Retry-After": "1"}) from exc
    except SchedulerStopped as exc:
        raise ApiError(503, str(exc), "shutting_down", {"Retry-After": "1"}) from exc


async def run_embed(
    engines: EnginesDep, texts: list[str], max_length: int, normalize: bool, truncate: bool = True
) -> Embedded:
    with engine_errors():
        return await engines.embedding.embed(
            texts, max_length, normalize=normalize, truncate=truncate
        )


def names_model(requested: str, served: str) -> bool:
    # Clients name models loosely ("sentence-transformers/all-MiniLM-L6-v2"): compare tails.
    return requested.rsplit("/", 1)[-1].lower() == served.lower()


def check_model(requested: str | None, served: str, strict: bool) -> None:
    """One model is served: any requested name gets it (as TEI and Infinity answer), and
    the response names it. With strict names, another name is OpenAI's 404."""
    if strict and requested and not names_model(requested, served):
        raise ApiError(
            404,
            f"model {requested!r} is not served here; this server serves {served!r}",
            "model_not_found",
        )


def refuse_cloud_provider(provider_type: str | None, what: str) -> None:
    """Onyx's requests may name a cloud provider to forward to; only local models run here."""
    if provider_type:
        raise ApiError(
            400, f"cloud {what} providers are not served by this server", "invalid_request"
        )


def truncate_dimensions(vectors: FloatArray, dimensions: int | None, served: int) -> FloatArray:
    if dimensions is None or dimensions == served:
        return vectors
    if dimensions > served:
        raise ApiError(400, f"dimensions must be at most {served}", "invalid_request")
    return l2_normalize(vectors[:, :dimensions])


@router.post(
    "/encoder/bi-encoder-embed",
    response_model=EmbedResponse,
    tags=["onyx"],
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": inline_schema(EmbedRequest)}},
        }
    },
)
async def onyx_embed(request: Request) -> FastJSONResponse:
    """The query path's endpoint: the body is validated straight from bytes and the
    dependencies are called directly, which halves FastAPI's per-request overhead."""
    state = await get_state(request)
    engines = await ready_engines(state)
    body = parse_body(EmbedRequest, await request.body())
    refuse_cloud_provider(body.provider_type, "embedding")
    check_model(body.model_name, engines.embedding.name, state.settings.strict_model_name)
    check_texts(body.texts, state.settings.max_items_per_request, "texts")
    prefix = (
        body.manual_query_prefix if body.text_type is TextType.QUERY else body.manual_passage_prefix
    )
    texts = [prefix + t for t in body.texts] if prefix else body.texts
    result = await run_embed(engines, texts, body.max_context_length, body.normalize_embeddings)
    return FastJSONResponse({"embeddings": result.vectors})


@router.post("/v1/embeddings", response_model=OpenAIEmbeddingResponse, tags=["openai"])
async def openai_embeddings(
    body: OpenAIEmbeddingRequest, engines: EnginesDep, state: StateDep
) -> FastJSONResponse:
    check_model(body.model, engines.embedding.name, state.settings.strict_model_name)
    texts = [body.input] if isinstance(body.input, str) else body.input
    check_texts(texts, state.settings.max_items_per_request, "input")
    result = await run_embed(engines, texts, state.settings.max_context_length, True)
    vectors = truncate_dimensions(result.vectors, body.dimensions, engines.embedding.dimensions)
    if body.encoding_format == "base64":
        little = vectors.astype("<f4", copy=False)
        encoded: list[object] = [base64.b64encode(row.tobytes()).decode() for row in little]
    else:
        encoded = list(vectors)
    return FastJSONResponse(
        {
            "object": "list",
            "data": [
                {"object": "embedding", "index": i, "embedding": e} for i, e in enumerate(encoded)
            ],
            "model": engines.embedding.name,
            "usage": {"prompt_tokens": result.token_count, "total_tokens": result.token_count},
        }
    )


@router.post("/embed", response_model=list[list[float]], tags=["tei"])
async def tei_embed(
    body: TEIEmbedRequest, engines: EnginesDep, state: StateDep
) -> FastJSONResponse:
    texts = [body.inputs] if isinstance(body.inputs, str) else body.inputs
    check_texts(texts, state.settings.max_items_per_request, "inputs")
    limit = state.settings.max_context_length
    result = await run_embed(engines, texts, limit, body.normalize, body.truncate)
    vectors = truncate_dimensions(result.vectors, body.dimensions, engines.embedding.dimensions)
    return FastJSONResponse(np.ascontiguousarray(vectors))
