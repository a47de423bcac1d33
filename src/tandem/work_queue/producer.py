"""The producer side of indexing: the Celery app and the "there is work" messages.

The items themselves wait in PostgreSQL (`tandem.work_queue.claims`); a message carries no item
ids, only where it came from. The API sends on an upload, the workers' chains and sweep
send too; what a message does is the consumer side (`tandem.work_queue.consumer`). The API
imports only this module, so it loads no worker code.
"""

from __future__ import annotations

from celery import Celery

from tandem.config import StorageSettings
from tandem.work_queue import broker

INDEX_TASK = "tandem.index_items"
# "A source's sync was asked for": any worker polls for due sources (tandem.db.sources).
SYNC_TASK = "tandem.sync_sources"
QUEUE = "indexing"
# Messages an upload sends: enough to start that many threads on it; chains do the rest.
UPLOAD_MESSAGES = 4


def make_celery(settings: StorageSettings) -> Celery:
    app = Celery("tandem", broker=settings.require_redis_url(), set_as_current=False)
    app.conf.update(
        # Redis, without the restore on close that stops a worker when Redis goes away.
        broker_transport=broker.TRANSPORT,
        task_default_queue=QUEUE,
        # Acknowledge after the work is done. A killed worker's message comes back after
        # the visibility timeout, but nothing waits for it: its items' leases run out and
        # the sweep sends new messages.
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


def send_work(app: Celery, count: int, origin: str, expires_seconds: int) -> None:
    for _ in range(count):
        app.send_task(INDEX_TASK, kwargs={"origin": origin}, queue=QUEUE, expires=expires_seconds)


def request_syncs(app: Celery, expires_seconds: int) -> None:
    """Wake a worker to start requested syncs now, not at its next sweep."""
    app.send_task(SYNC_TASK, queue=QUEUE, expires=expires_seconds)


def enqueue_items(app: Celery, item_ids: list[int], expires_seconds: int) -> None:
    """Announce newly stored items (the API, after an upload)."""
    send_work(app, min(len(item_ids), UPLOAD_MESSAGES), "upload", expires_seconds)
