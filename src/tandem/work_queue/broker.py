"""The Redis broker transport the workers and the API use: kombu's, made to survive Redis
going away while tasks run.

Two things stopped a worker with "Unrecoverable error" when Redis restarted mid-ingest
(tests/test_restarts.py): closing the lost channel restores its unacknowledged messages,
and a task that finishes after the reconnect acknowledges its message on that closed
channel. Both need the lost connection's parameters, which are gone (`'NoneType' object
has no attribute ...`). Neither is needed here: a message carries no item ids, the items
wait in PostgreSQL under leases, and the sweep sends new messages when due items wait and
none are queued (`tandem.worker.sweep`). A message of a closed channel stays in Redis's
unacknowledged set and comes back after the visibility timeout, where it claims nothing
that is not due.
"""

from __future__ import annotations

import logging

from kombu.transport import redis as kombu_redis

log = logging.getLogger(__name__)

# Celery's `broker_transport` setting: this module's Transport, by import path.
TRANSPORT = f"{__name__}:Transport"


class Channel(kombu_redis.Channel):
    do_restore = False

    def _lost(self) -> bool:
        return bool(self.closed) or self.connection is None

    def basic_ack(self, delivery_tag: object, multiple: bool = False) -> None:
        if self._lost():
            log.warning("ack_skipped reason=channel_closed delivery_tag=%s", delivery_tag)
            return
        super().basic_ack(delivery_tag, multiple=multiple)  # type: ignore[no-untyped-call]

    def basic_reject(self, delivery_tag: object, requeue: bool = False) -> None:
        if self._lost():
            log.warning("reject_skipped reason=channel_closed delivery_tag=%s", delivery_tag)
            return
        super().basic_reject(delivery_tag, requeue=requeue)  # type: ignore[no-untyped-call]


class Transport(kombu_redis.Transport):
    Channel = Channel
