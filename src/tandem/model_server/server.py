"""Run one model server process: pin CPUs, check the model, serve with uvicorn."""

from __future__ import annotations

import logging

import uvicorn

from tandem.config import ModelServerSettings
from tandem.model_server import cpu
from tandem.model_server.app import create_app
from tandem.model_server.manifest import ModelKind, locate_prepared

log = logging.getLogger(__name__)


def check_models(settings: ModelServerSettings) -> None:
    """Fail before binding the port when a model is missing (raises ModelNotPrepared)."""
    locate_prepared(settings.model_cache, settings.embedding_model, ModelKind.BI_ENCODER)
    if settings.rerank_model and not settings.indexing_only:
        locate_prepared(settings.model_cache, settings.rerank_model, ModelKind.CROSS_ENCODER)


def serve(settings: ModelServerSettings) -> None:
    check_models(settings)
    if settings.cpus:
        cpus = cpu.parse_cpu_list(settings.cpus)
        cpu.pin(cpus)
        log.info("pinned role=%s cpus=%s", settings.role.value, cpu.format_cpu_list(cpus))
    log.info(
        "starting role=%s host=%s port=%d", settings.role.value, settings.bind_host, settings.port
    )
    uvicorn.run(
        create_app(settings),
        host=settings.bind_host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=int(settings.drain_seconds) or None,
        # Longer than clients keep idle connections (ModelClient: 2 s), so the client
        # side always closes first and no request races a server-side close.
        timeout_keep_alive=30,
        lifespan="on",
    )
