"""Resources of one API server process, owned by its lifespan, and the route dependencies."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from celery import Celery
from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from redis import Redis
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from tandem.api.auth import Authenticator
from tandem.api.auth_middleware import BAD_KEY, CALLER_STATE
from tandem.api.search_metrics import SearchMetrics
from tandem.config import ApiSettings
from tandem.db.principals import Caller, Scope
from tandem.db.replicas import ReadRouter
from tandem.index.protocol import DocumentIndex
from tandem.model_client.client import ModelClient
from tandem.model_client.status import ModelServerStatus
from tandem.wire.errors import ApiError


@dataclass
class ApiState:
    settings: ApiSettings
    engine: Engine
    search_engine: Engine  # searches and chunk reads on the primary: no pre-ping
    sessions: sessionmaker[Session]  # the primary: writes, and reads that must be current
    reads: ReadRouter  # catalog reads: a caught-up replica, else the primary
    index: DocumentIndex  # searches and chunk reads through `reads`, writes on the primary
    inference: ModelClient  # the inference model server: queries only
    celery: Celery  # the Celery app: sends the wake-up messages (tandem.work_queue.producer)
    redis: Redis
    authenticator: Authenticator  # API key -> Caller, for auth_middleware
    search_metrics: SearchMetrics  # GET /metrics
    inference_status: ModelServerStatus | None = None

    def record_inference_status(self, status: ModelServerStatus) -> None:
        self.inference_status = status


# Every dependency here is `async def`: FastAPI sends a plain `def` dependency to the
# thread pool on each request, and a search's three such hand-offs (state, caller, scope)
# cost more of the API's CPU than its SQL statements (py-spy, 4 clients). None of them
# blocks: each reads what the lifespan or the key middleware has already put in place.
async def get_state(request: Request) -> ApiState:
    state: ApiState = request.app.state.api
    return state


StateDep = Annotated[ApiState, Depends(get_state)]


# Declared so the OpenAPI document says which routes need a key (and clients and the
# fuzzer send one); the checks and the error envelope are ours (auto_error off).
API_KEY = HTTPBearer(
    scheme_name="ApiKey",
    description="An API key from `tandem api-key create`, as `Authorization: Bearer <key>`",
    auto_error=False,
)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Security(API_KEY)]


async def current_caller(request: Request, _credentials: Credentials) -> Caller:
    """Who the request runs as, as `ApiKeyMiddleware` found before the body was read (the
    credentials parameter only documents the scheme in OpenAPI). No caller is a refusal:
    a route outside the middleware's checks fails closed."""
    caller = request.scope.get("state", {}).get(CALLER_STATE)
    if not isinstance(caller, Caller):
        raise ApiError(401, BAD_KEY, "unauthorized", {"WWW-Authenticate": "Bearer"})
    return caller


CallerDep = Annotated[Caller, Depends(current_caller)]
Authorized = Depends(current_caller)


def _scope(needed: Scope) -> Callable[[Caller], Awaitable[Caller]]:
    async def check(caller: CallerDep) -> Caller:
        if not caller.may(needed):
            raise ApiError(
                403,
                f"this API key's scope is {caller.scope.value!r}; this needs {needed.value!r}",
                "forbidden",
            )
        return caller

    return check


# A route's caller, with at least that scope (403 otherwise).
Searching = Annotated[Caller, Depends(_scope(Scope.SEARCH))]
Ingesting = Annotated[Caller, Depends(_scope(Scope.INGEST))]
Administering = Annotated[Caller, Depends(_scope(Scope.ADMIN))]
