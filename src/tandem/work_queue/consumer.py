"""The consumer side of indexing: the task that handles "there is work" messages.

The items themselves wait in PostgreSQL (`tandem.work_queue.claims`); a message carries no item
ids, only where it came from (the producer side, `tandem.work_queue.producer`). Each task claims
the next batch, and after a claim sends one message on (a chain) so another free thread
claims the batch after it meanwhile, plus one more when no message is waiting (a free
thread somewhere can help). So a lost, expired or redelivered message neither loses nor
doubles work; the sweep (`tandem.worker.sweep`) sends messages when due items wait and
none are queued.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from celery import Celery, Task
from kombu.exceptions import OperationalError as BrokerError

from tandem.work_queue.producer import INDEX_TASK, SYNC_TASK, send_work

log = logging.getLogger(__name__)


# The queue sits below the worker (the worker's pipeline and sync runner implement these),
# so that it knows how a batch is asked for, not how one is indexed.
class BatchCounts(Protocol):
    @property
    def items(self) -> int: ...
    @property
    def indexed(self) -> int: ...
    @property
    def failed(self) -> int: ...


class BatchRunner(Protocol):
    def run_batch(
        self,
        origin: str,
        redelivered: bool = False,
        on_claimed: Callable[[int], None] | None = None,
    ) -> BatchCounts: ...


class SyncPoller(Protocol):
    def poll(self) -> str | None: ...


def register_index_task(
    app: Celery,
    pipeline: BatchRunner,
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

    def index_items(self: Task, origin: str = "upload") -> str:
        redelivered = bool((self.request.delivery_info or {}).get("redelivered"))
        if redelivered:
            # The broker gave back an unacknowledged message (its worker died, or it ran
            # past the visibility timeout): harmless, and worth seeing in the log.
            log.info("message_redelivered origin=%s", origin)
        timings = pipeline.run_batch(origin, redelivered, chain)
        return f"claimed={timings.items} indexed={timings.indexed} failed={timings.failed}"

    return app.task(name=INDEX_TASK, bind=True, acks_late=True)(index_items)


def register_sync_task(app: Celery, runner: SyncPoller) -> Task:
    def sync_sources() -> str:
        started = runner.poll()
        return f"started={started}" if started else "nothing due here"

    return app.task(name=SYNC_TASK)(sync_sources)
