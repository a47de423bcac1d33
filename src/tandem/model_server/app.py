"""The model server's FastAPI app: one codebase, the role decides what mounts."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from fastapi import APIRouter, FastAPI
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tandem.config import ModelServerSettings, Role
from tandem.http_errors import BodySizeLimit, install_error_handlers
from tandem.model_server.metrics import ModelServerMetrics
from tandem.model_server.routes_embed import router as embed_router
from tandem.model_server.routes_rerank import router as rerank_router
from tandem.model_server.routes_rerank import wrong_role_router
from tandem.model_server.state import ServerState, StateDep
from tandem.schemas import HealthResponse, ReadyResponse

ops_router = APIRouter(tags=["operations"])


@ops_router.get("/api/health", response_model=HealthResponse)
async def health(state: StateDep) -> HealthResponse:
    return HealthResponse(role=state.settings.role.value)


@ops_router.get("/api/ready", response_model=ReadyResponse)
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


class RequestMetrics:
    """Counts and times requests per known endpoint (unknown paths share one label)."""

    def __init__(self, app: ASGIApp, metrics: ModelServerMetrics, endpoints: set[str]) -> None:
        self.app = app
        self.metrics = metrics
        self.endpoints = endpoints

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
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
        embed_router,
        rerank_router if settings.role is Role.INFERENCE else wrong_role_router(),
    ]
    for router in routers:
        app.include_router(router)
    endpoints = {
        route.path for router in routers for route in router.routes if hasattr(route, "path")
    }
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes)
    app.add_middleware(RequestMetrics, metrics=state.metrics, endpoints=endpoints)
    return app
