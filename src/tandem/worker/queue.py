"""The Celery side of indexing: one task per attempt item, on the `indexing` queue.

The API only *sends* tasks by name, so it needs no worker code; the worker registers the
task with its own resources in `create_worker`.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import Celery, Task
from sqlalchemy.orm import Session, sessionmaker

from tandem.config import StorageSettings
from tandem.db import attempts
from tandem.model_client import ModelServerUnavailable
from tandem.worker.pipeline import IndexingPipeline

log = logging.getLogger(__name__)

INDEX_ITEM_TASK = "tandem.index_item"
QUEUE = "indexing"
MAX_BACKOFF_SECONDS = 60


def make_celery(settings: StorageSettings) -> Celery:
    app = Celery("tandem", broker=settings.require_redis_url(), set_as_current=False)
    app.conf.update(
        task_default_queue=QUEUE,
        # Acknowledge after the work is done: a killed worker's task is delivered again
        # once the visibility timeout passes, and the pipeline is idempotent.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        broker_transport_options={"visibility_timeout": settings.task_visibility_timeout},
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
    )
    return app


def enqueue_items(app: Celery, item_ids: list[int], expires_seconds: int) -> None:
    for item_id in item_ids:
        app.send_task(INDEX_ITEM_TASK, args=[item_id], queue=QUEUE, expires=expires_seconds)


def register_index_task(app: Celery, pipeline: IndexingPipeline) -> Task:
    def index_item(self: Task, item_id: int) -> str:
        try:
            return str(pipeline.run(item_id))
        except ModelServerUnavailable as exc:
            retries = self.request.retries or 0
            countdown = exc.retry_after or min(MAX_BACKOFF_SECONDS, 2 ** min(retries, 6))
            attempts.note_waiting(pipeline.sessions, item_id, str(exc))
            log.warning(
                "indexing_server_unavailable item=%d retry=%d in=%.1fs",
                item_id,
                retries,
                countdown,
            )
            raise self.retry(exc=exc, countdown=countdown) from exc

    return app.task(name=INDEX_ITEM_TASK, bind=True, max_retries=None, acks_late=True)(index_item)


def requeue_stale(
    app: Celery, sessions: sessionmaker[Session], older_than: timedelta, expires_seconds: int
) -> int:
    """Send again the tasks of unfinished items whose messages may be lost (Redis lost its
    data). Duplicates are harmless: a finished item is skipped."""
    with sessions() as session:
        item_ids = attempts.stale_item_ids(session, older_than)
    enqueue_items(app, item_ids, expires_seconds)
    return len(item_ids)
