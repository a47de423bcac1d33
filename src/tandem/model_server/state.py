"""Per-app state owned by the lifespan, and the dependencies routes use to reach it."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

import orjson
from fastapi import Depends, Request
from starlette.responses import Response

from tandem.config import ModelServerSettings
from tandem.model_files import ModelNotPrepared
from tandem.model_server.engine import Engines, load_engines
from tandem.model_server.metrics import ModelServerMetrics
from tandem.wire.errors import ApiError

log = logging.getLogger(__name__)


class ServerState:
    def __init__(self, settings: ModelServerSettings) -> None:
        self.settings = settings
        self.metrics = ModelServerMetrics(settings.role.value)
        self.engines: Engines | None = None
        self.ready = False
        self.load_error: str | None = None

    async def load(self) -> None:
        """Load and warm up after the socket is open, so /api/health answers meanwhile."""
        try:
            self.engines = await asyncio.to_thread(load_engines, self.settings, self.metrics)
        except ModelNotPrepared as exc:
            self.load_error = str(exc)
            log.error("model_load_failed error=%s", exc)
            return
        self.engines.start()
        await self.engines.warm_up()
        self.ready = True
        log.info("ready role=%s", self.settings.role.value)

    def close(self) -> None:
        if self.engines is not None:
            self.engines.stop(self.settings.drain_seconds)


# async: a plain `def` dependency is sent to the thread pool on every request (~0.3 ms).
async def get_state(request: Request) -> ServerState:
    state: ServerState = request.app.state.server
    return state


StateDep = Annotated[ServerState, Depends(get_state)]


async def ready_engines(state: StateDep) -> Engines:
    if state.load_error:
        raise ApiError(503, state.load_error, "model_not_prepared")
    if not state.ready or state.engines is None:
        raise ApiError(503, "models are loading; retry shortly", "not_ready", {"Retry-After": "1"})
    return state.engines


EnginesDep = Annotated[Engines, Depends(ready_engines)]


class FastJSONResponse(Response):
    """orjson with numpy support: serializing embeddings is on the latency path."""

    media_type = "application/json"

    def render(self, content: object) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)
