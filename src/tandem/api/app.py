"""The API server's FastAPI app: uploads, index attempts, documents, search."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import asdict

from fastapi import APIRouter, FastAPI, Request
from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from starlette.responses import JSONResponse, Response

from tandem.api.auth import Authenticator, FailureLimiter, database_lookup
from tandem.api.auth_middleware import ApiKeyMiddleware
from tandem.api.body_limits import RouteBodyLimits, api_limits
from tandem.api.read_routing import RoutedIndex
from tandem.api.replica_metrics import ReplicaCollector, status_out
from tandem.api.routes_documents import router as documents_router
from tandem.api.routes_ingest import router as ingest_router
from tandem.api.routes_principals import router as principals_router
from tandem.api.routes_search import router as search_router
from tandem.api.routes_sources import router as sources_router
from tandem.api.routes_status import record_samples
from tandem.api.routes_status import router as status_router
from tandem.api.search_metrics import SearchMetrics
from tandem.api.state import ApiState, Authorized, StateDep
from tandem.config import ApiSettings, ModelCacheSettings
from tandem.db import attempts, catalog
from tandem.db.migrate import upgrade
from tandem.db.replicas import ReadRouter, ReplicaMonitor, replica_names
from tandem.db.session import make_engine, make_session_factory
from tandem.http.guards import HostAllowlist, RequestGuards
from tandem.index.fusion import Fusion
from tandem.model_client.client import ModelClient
from tandem.model_client.dimensions import check_dimensions, configured_model_dimensions
from tandem.model_client.history import MetricsHistory
from tandem.model_client.status import INDEXING_STATUS_KEY, StatusProbe, read_published
from tandem.wire.errors import error_response, error_responses, install_error_handlers
from tandem.work_queue.producer import make_celery

log = logging.getLogger(__name__)
ops_router = APIRouter(prefix="/api", tags=["operations"])


@ops_router.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok", "service": "api"}


@ops_router.get("/ready", responses={503: {"description": "The database is not reachable"}})
def ready(state: StateDep) -> JSONResponse:
    try:
        with state.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        # Probes carry no key: the error's text (host names, user, driver) stays in the log.
        log.warning("not_ready error=%s", (str(exc).splitlines() or [""])[0])
        return JSONResponse({"ready": False, "detail": "database unreachable"}, status_code=503)
    return JSONResponse({"ready": True})


@ops_router.get("/stats", dependencies=[Authorized], responses=error_responses(401, 503))
def stats(state: StateDep) -> dict[str, object]:
    """For the status page: counts, queue length, and both model servers' status (the
    inference server as this API server sees it, the indexing server as workers report it)."""
    with state.sessions() as session:
        documents, chunks = catalog.counts(session)
        # PostgreSQL holds the waiting items; Redis only announces them.
        queued = attempts.waiting_items(session)
    try:
        state.redis.ping()
    except RedisError:
        queued = -1  # shown as unknown; the queue being down is not the API's failure
    inference = state.inference_status
    return {
        "documents": documents,
        "chunks": chunks,
        "queue_length": queued,
        # Each read replica as last measured; [] when reads go to the primary alone.
        "read_replicas": [status_out(s) for s in state.reads.statuses()],
        "model_servers": {
            "inference": asdict(inference) if inference else None,
            "indexing": read_published(state.redis, INDEXING_STATUS_KEY),
        },
        # Each inference server this API server spreads queries over, as it sees them.
        "inference_endpoints": [asdict(e) for e in state.inference.endpoints.states()],
    }


# Outside /api/: Prometheus scrapes without a key, as it does the model servers.
metrics_router = APIRouter(tags=["operations"])


@metrics_router.get("/metrics", include_in_schema=False)
def metrics(state: StateDep) -> Response:
    return Response(state.search_metrics.render(), media_type="text/plain; version=0.0.4")


async def _on_database_unavailable(_: Request, exc: Exception) -> Response:
    # A restarted or unreachable PostgreSQL is a passing state, not a server bug: the
    # pool's pre-ping reconnects on the next request once it is back.
    log.warning("database_unavailable error=%s", str(exc).splitlines()[0])
    return error_response(
        503, "the database is unavailable; retry shortly", "not_ready", {"Retry-After": "2"}
    )


# Pooled search connections are replaced after this long, so that few are stale when a
# search takes one (each stale one costs its search a retried round).
SEARCH_RECYCLE_SECONDS = 600


def build_state(settings: ApiSettings) -> ApiState:
    engine = make_engine(settings.require_database_url())
    upgrade(engine)
    sessions = make_session_factory(engine)
    urls = settings.database_read_urls
    # Searches on engines without the pool's pre-ping: a round trip fewer per search; a
    # dropped connection fails one round, which the index runs again.
    search_engine = make_engine(
        settings.require_database_url(), pre_ping=False, recycle_seconds=SEARCH_RECYCLE_SECONDS
    )
    reads = ReadRouter(
        search_engine,
        {
            n: make_engine(
                u, connect_timeout=2, pre_ping=False, recycle_seconds=SEARCH_RECYCLE_SECONDS
            )
            for n, u in zip(replica_names(urls), urls, strict=True)
        },
        max_lag_seconds=settings.database_read_max_lag_seconds,
        catch_up_seconds=settings.database_read_catch_up_seconds,
    )
    # Queries are embedded by the inference server's model: refuse to serve an index of
    # another vector size (raises IncompatibleModel, naming both sizes).
    check_dimensions(sessions, *configured_model_dimensions(ModelCacheSettings()))
    return ApiState(
        settings=settings,
        engine=engine,
        search_engine=search_engine,
        sessions=sessions,
        reads=reads,
        index=RoutedIndex(reads, Fusion(settings.fusion)),
        # Queries must not wait long for an overloaded server: fall back to keywords.
        inference=ModelClient(
            settings.model_server_urls, timeout=settings.model_timeout_seconds, overload_wait=0.5
        ),
        celery=make_celery(settings),
        redis=Redis.from_url(settings.require_redis_url(), socket_timeout=2.0),
        authenticator=Authenticator(
            database_lookup(sessions),
            valid_seconds=settings.api_key_cache_seconds,
            failures=FailureLimiter(settings.key_failures_per_minute),
        ),
        search_metrics=SearchMetrics(),
    )


def create_app(settings: ApiSettings) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = build_state(settings)
        app.state.api = state
        # The status page's charts: each inference probe also samples the indexing
        # server's last report and the queue into this app's bounded history.
        history = MetricsHistory()
        app.state.metrics_history = history
        probe = StatusProbe(settings.model_server_url, record_samples(state, history))
        probe.start()
        monitor = ReplicaMonitor(state.reads, settings.database_read_check_seconds)
        monitor.start()
        # One /metrics: the searches' stages and each read replica's lag.
        state.search_metrics.registry.register(ReplicaCollector(state.reads))
        log.info(
            "api_ready inference_servers=%s open_access=%s read_replicas=%d",
            ",".join(settings.model_server_urls),
            settings.open_access,
            len(settings.database_read_urls),
        )
        try:
            yield
        finally:
            probe.stop()
            monitor.stop()
            state.index.close()
            state.reads.dispose()
            state.inference.close()
            state.celery.close()
            state.redis.close()
            state.engine.dispose()
            state.search_engine.dispose()

    app = FastAPI(title="Tandem API", version="0.1.0", lifespan=lifespan)
    install_error_handlers(app)
    app.add_exception_handler(OperationalError, _on_database_unavailable)
    app.include_router(ops_router)
    app.include_router(metrics_router)
    # Every route that reads the database answers 503 while it is unreachable.
    app.include_router(ingest_router, responses=error_responses(503))
    app.include_router(documents_router, responses=error_responses(503))
    app.include_router(status_router)
    app.include_router(sources_router, responses=error_responses(503))
    app.include_router(principals_router, responses=error_responses(503))
    # Search is documented here, with the errors every JSON endpoint can answer.
    app.include_router(search_router, responses=error_responses(400, 401, 413, 422, 503))
    # Outermost last: Host and cross-site checks, then the key, then the body limits, all
    # before the route reads a byte of the body.
    app.add_middleware(RouteBodyLimits, limit_for=api_limits(settings))
    app.add_middleware(
        ApiKeyMiddleware,
        open_access=settings.open_access,
        authenticator=lambda: _state(app).authenticator,
    )
    app.add_middleware(RequestGuards, allowed_hosts=HostAllowlist.parse(settings.allowed_hosts))
    return app


def _state(app: FastAPI) -> ApiState:
    state: ApiState = app.state.api
    return state
