"""Run one model server process: check the model, pin CPUs and set the CPU priority, serve."""

from __future__ import annotations

import logging

from tandem import cpu
from tandem.config import ModelServerSettings
from tandem.http.serving import serve as serve_app
from tandem.model_files import ModelKind, locate_prepared
from tandem.model_server.app import create_app

log = logging.getLogger(__name__)


def check_models(settings: ModelServerSettings) -> None:
    """Fail before binding the port when a model is missing (raises ModelNotPrepared)."""
    locate_prepared(
        settings.model_cache,
        settings.embedding_model,
        ModelKind.BI_ENCODER,
        precision=settings.precision,
    )
    if settings.rerank_model and not settings.indexing_only:
        locate_prepared(settings.model_cache, settings.rerank_model, ModelKind.CROSS_ENCODER)


def serve(settings: ModelServerSettings) -> None:
    check_models(settings)
    if settings.cpus:
        cpus = cpu.parse_cpu_list(settings.cpus)
        cpu.pin(cpus)
        log.info("pinned role=%s cpus=%s", settings.role.value, cpu.format_cpu_list(cpus))
    # Before uvicorn and ONNX Runtime start their threads: they inherit the priority.
    applied = cpu.apply_priority(settings.cpu_priority)
    log.info("cpu_priority role=%s priority=%s", settings.role.value, applied)
    log.info(
        "starting role=%s host=%s port=%d", settings.role.value, settings.bind_host, settings.port
    )
    serve_app(
        create_app(settings),
        host=settings.bind_host,
        port=settings.port,
        drain_seconds=settings.drain_seconds,
    )
