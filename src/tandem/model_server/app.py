"""The model server's FastAPI app: one codebase, the role decides what mounts."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from importlib.metadata import PackageNotFoundError, version

from fastapi import APIRouter, FastAPI
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tandem.config import ModelServerSettings, Role
from tandem.model_files import MANIFEST_FILE, Precision, model_dir
from tandem.model_server.auth import BearerKey, document_key
from tandem.model_server.metrics import ModelServerMetrics
from tandem.model_server.routes_embed import names_model
from tandem.model_server.routes_embed import router as embed_router
from tandem.model_server.routes_rerank import router as rerank_router
from tandem.model_server.routes_rerank import wrong_role_router
from tandem.model_server.state import EnginesDep, ServerState, StateDep
from tandem.wire.errors import (
    ApiError,
    BodySizeLimit,
    HttpMiddleware,
    error_responses,
    install_error_handlers,
)
from tandem.wire.model import (
    HealthResponse,
    OpenAIModel,
    OpenAIModelList,
    ReadyResponse,
    TEIEmbeddingModel,
    TEIInfo,
    TEIModelType,
)

ops_router = APIRouter(tags=["operations"])
models_router = APIRouter()
OWNER = "tandem"
# TEI names the weights' type as torch does.
TEI_DTYPES = {Precision.FP32: "float32", Precision.INT8: "int8"}


def _version() -> str:
    try:
        return version("tandem")
    except PackageNotFoundError:
        return "unknown"


@ops_router.get("/api/health", response_model=HealthResponse)
async def health(state: StateDep) -> HealthResponse:
    return HealthResponse(role=state.settings.role.value)


@ops_router.get(
    "/api/ready",
    response_model=ReadyResponse,
    responses={503: {"model": ReadyResponse, "description": "Loading, or the model is missing"}},
)
async def ready(state: StateDep) -> Response:
    engines = state.engines
    body = ReadyResponse(
        ready=state.ready,
        role=state.settings.role.value,
        embedding_model=state.settings.embedding_model,
        rerank_model=engines.rerank.name if engines and engines.rerank else None,
        threads=engines.threads if engines else 0,
        detail=state.load_error or (None if state.ready else "loading models"),
    )
    return Response(
        body.model_dump_json(),
        status_code=200 if state.ready else 503,
        media_type="application/json",
    )


@ops_router.get("/metrics", include_in_schema=False)
async def metrics(state: StateDep) -> Response:
    return Response(state.metrics.render(), media_type="text/plain; version=0.0.4")


def _served_models(state: ServerState) -> list[OpenAIModel]:
    settings = state.settings
    names = [settings.embedding_model]
    if settings.role is Role.INFERENCE and settings.rerank_model:
        names.append(settings.rerank_model)
    return [
        OpenAIModel(id=name, created=_prepared_at(settings, name), owned_by=OWNER) for name in names
    ]


def _prepared_at(settings: ModelServerSettings, name: str) -> int:
    try:
        return int((model_dir(settings.model_cache, name) / MANIFEST_FILE).stat().st_mtime)
    except OSError:
        return 0  # not prepared (yet): the server says so on /api/ready


@models_router.get("/v1/models", response_model=OpenAIModelList, tags=["openai"])
async def openai_models(state: StateDep) -> OpenAIModelList:
    """The models served here, in OpenAI's list shape (what OpenAI clients ask first)."""
    return OpenAIModelList(data=_served_models(state))


@models_router.get(
    "/v1/models/{model_id:path}",
    response_model=OpenAIModel,
    tags=["openai"],
    responses=error_responses(404, s404="Model not served (strict model names only)"),
)
async def openai_model(model_id: str, state: StateDep) -> OpenAIModel:
    served = _served_models(state)
    for model in served:
        if names_model(model_id, model.id):
            return model
    if not state.settings.strict_model_name:
        return served[0]  # any name means the one embedding model, as for embeddings
    raise ApiError(404, f"model {model_id!r} is not served here", "model_not_found")


@models_router.get("/info", response_model=TEIInfo, tags=["tei"], responses=error_responses(503))
async def tei_info(engines: EnginesDep, state: StateDep) -> TEIInfo:
    """TEI's description of the server, with this server's limits under TEI's names."""
    settings = state.settings
    limits = settings.scheduling()
    embedding = engines.embedding
    return TEIInfo(
        model_id=embedding.name,
        model_sha=None,
        model_dtype=TEI_DTYPES[settings.precision],
        model_type=TEIModelType(embedding=TEIEmbeddingModel(pooling="mean")),
        max_concurrent_requests=limits.max_queue_items,
        max_input_length=min(settings.max_context_length, embedding.max_seq_length),
        max_batch_tokens=limits.max_batch_tokens,
        max_batch_requests=limits.max_batch_size,
        max_client_batch_size=settings.max_items_per_request,
        auto_truncate=True,  # /embed truncates unless a request sends truncate=false
        tokenization_workers=1,
        version=_version(),
        sha=None,
        docker_label=None,
    )


class RequestMetrics(HttpMiddleware):
    """Counts and times requests per known endpoint (unknown paths share one label)."""

    def __init__(self, app: ASGIApp, metrics: ModelServerMetrics, endpoints: set[str]) -> None:
        super().__init__(app)
        self.metrics = metrics
        self.endpoints = endpoints

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        endpoint = path if path in self.endpoints else "other"
        status = 500
        started = time.perf_counter()

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            self.metrics.requests.labels(endpoint, str(status)).inc()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - started)


def create_app(settings: ModelServerSettings) -> FastAPI:
    state = ServerState(settings)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        loading = asyncio.create_task(state.load())
        try:
            yield
        finally:
            loading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loading
            await asyncio.to_thread(state.close)

    app = FastAPI(
        title=f"Tandem model server ({settings.role.value})",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.server = state
    install_error_handlers(app)
    routers = [
        ops_router,
        models_router,
        embed_router,
        rerank_router if settings.role is Role.INFERENCE else wrong_role_router(),
    ]
    for router in routers:
        app.include_router(router)
    endpoints = {
        route.path for router in routers for route in router.routes if hasattr(route, "path")
    }
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes)
    if settings.api_key:
        # Outside the body limit (a caller without the key gets 401 before any body is
        # read) and inside the metrics (401s are counted).
        opened = open_paths(app)
        app.add_middleware(BearerKey, key=settings.api_key, open_paths=opened)
        app.openapi = document_key(app.openapi, opened)  # type: ignore[method-assign]
    app.add_middleware(RequestMetrics, metrics=state.metrics, endpoints=endpoints)
    return app


def open_paths(app: FastAPI) -> set[str]:
    """What answers without the key: the probes (kubelet and Compose send no key), the
    Prometheus scrape, and the OpenAPI document with its pages (they describe the API and
    hold no data)."""
    probes = {route.path for route in ops_router.routes if hasattr(route, "path")}
    docs = {app.openapi_url, app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url}
    return probes | {path for path in docs if path}
