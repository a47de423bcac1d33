"""`tandem worker`: build the worker's resources from settings and run Celery."""

from __future__ import annotations

import logging
from datetime import timedelta

from redis import Redis

from tandem.config import WorkerSettings
from tandem.db.migrate import upgrade
from tandem.db.session import make_engine, make_session_factory
from tandem.index.postgres import PostgresIndex
from tandem.model_client import ModelClient
from tandem.model_server.manifest import ModelKind, locate_prepared
from tandem.model_status import INDEXING_STATUS_KEY, StatusProbe, redis_publisher
from tandem.worker.chunking import Chunker
from tandem.worker.pipeline import IndexingPipeline
from tandem.worker.queue import QUEUE, make_celery, register_index_task, requeue_stale

log = logging.getLogger(__name__)


def run_worker(settings: WorkerSettings) -> None:
    engine = make_engine(settings.require_database_url(), pool_size=settings.concurrency)
    upgrade(engine)
    sessions = make_session_factory(engine)
    # The chunker needs only the tokenizer of the model the indexing server runs.
    directory, _ = locate_prepared(
        settings.model_cache, settings.embedding_model, ModelKind.BI_ENCODER, need_weights=False
    )
    pipeline = IndexingPipeline(
        sessions=sessions,
        index=PostgresIndex(sessions),
        embedder=ModelClient(
            settings.indexing_model_server_url,
            timeout=settings.model_timeout_seconds,
            batch_size=settings.embed_batch_size,
        ),
        chunker=Chunker.from_model_dir(directory, overlap_tokens=settings.chunk_overlap_tokens),
    )
    app = make_celery(settings)
    register_index_task(app, pipeline)
    # The status page learns about the indexing server from the workers that use it.
    status_redis = Redis.from_url(settings.require_redis_url(), socket_timeout=2.0)
    probe = StatusProbe(
        settings.indexing_model_server_url,
        redis_publisher(status_redis, INDEXING_STATUS_KEY, ttl_seconds=30),
    )
    probe.start()
    requeued = requeue_stale(
        app,
        sessions,
        timedelta(seconds=settings.task_visibility_timeout),
        settings.task_expiry_seconds,
    )
    log.info(
        "worker_starting concurrency=%d indexing_server=%s requeued=%d",
        settings.concurrency,
        settings.indexing_model_server_url,
        requeued,
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
        probe.stop()
        status_redis.close()
        pipeline.embedder.close()
        engine.dispose()
