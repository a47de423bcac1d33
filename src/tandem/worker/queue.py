"""The Celery side of indexing: "there is work" messages on the `indexing` queue.

The items themselves wait in PostgreSQL (`tandem.db.attempts`); a message carries no item
ids, only where it came from. Each task claims the next batch, and after a claim sends one
message on (a chain) so another free thread claims the batch after it meanwhile, plus one
more when no message is waiting (a free thread somewhere can help). So a lost, expired or
redelivered message neither loses nor doubles work; the sweep (`tandem.worker.sweep`)
sends messages when due items wait and none are queued. The API only *sends* by name, so
it needs no worker code.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from celery import Celery, Task
from kombu.exceptions import OperationalError as BrokerError

from tandem.config import StorageSettings
from tandem.worker import broker
from tandem.worker.pipeline import IndexingPipeline

log = logging.getLogger(__name__)

INDEX_TASK = "tandem.index_items"
# Messages of the version that sent one task per item (still queued after an upgrade).
LEGACY_INDEX_TASK = "tandem.index_item"
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


def enqueue_items(app: Celery, item_ids: list[int], expires_seconds: int) -> None:
    """Announce newly stored items (the API, after an upload)."""
    send_work(app, min(len(item_ids), UPLOAD_MESSAGES), "upload", expires_seconds)


def register_index_task(
    app: Celery,
    pipeline: IndexingPipeline,
    queue_length: Callable[[], int],
    expires_seconds: int,
) -> Task:
    def chain(claimed: int) -> None:
        more = 2 if queue_length() == 0 else 1
        try:
            send_work(app, more if claimed else 0, "chain", expires_seconds)
        except BrokerError as exc:
            # This batch goes on; the sweep sends messages for what is left.
            log.warning("chain_send_failed error=%s", exc)

    def index_items(self: Task, origin: str = "upload", *_legacy: object) -> str:
        redelivered = bool((self.request.delivery_info or {}).get("redelivered"))
        if redelivered:
            # The broker gave back an unacknowledged message (its worker died, or it ran
            # past the visibility timeout): harmless, and worth seeing in the log.
            log.info("message_redelivered origin=%s", origin)
        timings = pipeline.run_batch(origin, redelivered, chain)
        return f"claimed={timings.items} indexed={timings.indexed} failed={timings.failed}"

    def legacy_index_item(self: Task, item_id: int) -> str:
        return index_items(self, "legacy")

    app.task(name=LEGACY_INDEX_TASK, bind=True, acks_late=True)(legacy_index_item)
    return app.task(name=INDEX_TASK, bind=True, acks_late=True)(index_items)
