"""`tandem worker`: build the worker's resources from settings and run Celery."""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Sequence

from redis import Redis
from redis.exceptions import RedisError

from tandem.config import WorkerSettings
from tandem.db.migrate import upgrade
from tandem.db.session import make_engine, make_session_factory
from tandem.model_client.client import ModelClient
from tandem.model_client.dimensions import check_dimensions
from tandem.model_client.status import INDEXING_STATUS_KEY, StatusProbe, redis_publisher
from tandem.model_files import ModelKind, locate_prepared
from tandem.sources.sync import Syncer, SyncLimits
from tandem.work_queue import claims
from tandem.work_queue.consumer import register_index_task, register_sync_task
from tandem.work_queue.producer import QUEUE, UPLOAD_MESSAGES, make_celery, send_work
from tandem.worker.chunking import Chunker
from tandem.worker.held import HeldItems
from tandem.worker.limits import ParseLimits
from tandem.worker.liveness import LEASE_HEARTBEAT, Liveness, watch_celery_loop
from tandem.worker.pipeline import IndexingPipeline
from tandem.worker.sandbox import SandboxedParser, SandboxLimits
from tandem.worker.stages import Observers, StageObserver, TimingsFile
from tandem.worker.sweep import Periodic, Sweeper, heartbeat
from tandem.worker.syncing import SyncRunner

log = logging.getLogger(__name__)


def _observers(settings: WorkerSettings, extra: Sequence[StageObserver]) -> Observers:
    observers: list[StageObserver] = list(extra)
    if settings.timings_file is not None:
        observers.append(TimingsFile(settings.timings_file))
    return Observers(observers)


def run_worker(settings: WorkerSettings, observers: Sequence[StageObserver] = ()) -> None:
    """`observers`: told of each batch's stages, beside the timings file if one is set (a
    test's worker passes one that stops at a stage; see tests/held_worker.py)."""
    # First: a heartbeat file left by a previous run must not pass for this one's.
    liveness = Liveness(
        settings.heartbeat_file,
        interval=settings.heartbeat_seconds,
        stale_seconds=settings.stale_seconds,
        watchdog=settings.watchdog,
    )
    liveness.start()
    try:
        _run_worker(settings, liveness, observers)
    finally:
        liveness.stop()


def _run_worker(
    settings: WorkerSettings, liveness: Liveness, observers: Sequence[StageObserver]
) -> None:
    engine = make_engine(settings.require_database_url(), pool_size=settings.concurrency + 2)
    upgrade(engine)
    sessions = make_session_factory(engine)
    # The chunker needs only the tokenizer of the model the indexing server runs.
    directory, manifest = locate_prepared(
        settings.model_cache, settings.embedding_model, ModelKind.BI_ENCODER, need_weights=False
    )
    dimensions = check_dimensions(sessions, settings.embedding_model, manifest.dimensions)
    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    parser = SandboxedParser(
        SandboxLimits(
            timeout_seconds=settings.parse_timeout_seconds,
            memory_bytes=settings.parse_memory_bytes,
            workers=settings.parse_workers,
        ),
        ParseLimits(max_extracted_chars=settings.max_extracted_chars),
    )
    pipeline = IndexingPipeline(
        sessions=sessions,
        embedder=ModelClient(
            settings.indexing_model_server_urls,
            timeout=settings.model_timeout_seconds,
            batch_size=settings.embed_batch_size,
            api_key=settings.model_server_api_key or "",
        ),
        chunker=Chunker.from_model_dir(directory, overlap_tokens=settings.chunk_overlap_tokens),
        limits=claims.ClaimLimits(
            owner=owner,
            lease_seconds=settings.lease_seconds,
            max_items=settings.batch_items,
            max_bytes=settings.batch_bytes,
            max_failures=settings.max_item_failures,
        ),
        dimensions=dimensions,
        retry_base_seconds=settings.retry_base_seconds,
        observer=_observers(settings, observers),
        held=HeldItems(settings.max_batch_seconds),
        parser=parser,
    )
    app = make_celery(settings)
    redis = Redis.from_url(settings.require_redis_url(), socket_timeout=2.0)

    def queue_length() -> int:
        try:
            return int(redis.llen(QUEUE))
        except RedisError:
            return 1  # unknown: assume messages are waiting, send no extra ones

    def send(count: int, origin: str) -> None:
        send_work(app, count, origin, settings.task_expiry_seconds)

    register_index_task(app, pipeline, queue_length, settings.task_expiry_seconds)
    syncs = SyncRunner(
        sessions,
        Syncer(
            sessions,
            lambda items: send(min(items, UPLOAD_MESSAGES), "sync"),
            SyncLimits(max_file_bytes=settings.sync_max_file_bytes),
        ),
        owner,
        settings.sync_lease_seconds,
    )
    register_sync_task(app, syncs)
    # The status page learns about the indexing server from the workers that use it.
    probe = StatusProbe(
        settings.indexing_model_server_url,
        redis_publisher(redis, INDEXING_STATUS_KEY, ttl_seconds=30),
    )
    sweeper = Sweeper(sessions, queue_length, send, threads=settings.concurrency)
    started = sweeper.sweep("startup")
    sweeping = Periodic("sweep", settings.sweep_seconds, sweeper.sweep)
    leases = heartbeat(
        sessions,
        owner,
        pipeline.held,
        settings.lease_seconds,
        on_run=lambda: liveness.beat(LEASE_HEARTBEAT),
    )
    liveness.expect(LEASE_HEARTBEAT, settings.lease_seconds / 3)
    watch_celery_loop(app, liveness)
    polling = Periodic("source-syncs", settings.sweep_seconds, syncs.poll)
    for thread in (probe, sweeping, leases, polling):
        thread.start()
    log.info(
        "worker_starting owner=%s concurrency=%d indexing_server=%s batch_items=%d "
        "lease=%.0fs due=%d sent=%d heartbeat_file=%s",
        owner,
        settings.concurrency,
        ",".join(settings.indexing_model_server_urls),
        settings.batch_items,
        settings.lease_seconds,
        started.due,
        started.sent,
        settings.heartbeat_file,
    )
    try:
        app.worker_main(
            [
                "worker",
                "--loglevel=INFO",
                "--pool=threads",
                f"--concurrency={settings.concurrency}",
                f"--queues={QUEUE}",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ]
        )
    finally:
        for thread in (probe, sweeping, leases, polling):
            thread.stop()
        released = claims.release_owned(sessions, owner)
        log.info("worker_stopped owner=%s released=%d", owner, released)
        redis.close()
        parser.close()
        pipeline.embedder.close()
        engine.dispose()
