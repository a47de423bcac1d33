"""The items this worker's batches are working on right now: what its heartbeat extends."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable

log = logging.getLogger(__name__)


class HeldItems:
    """Item ids by the time their batch claimed them. The heartbeat extends the leases of
    these only, and only for `max_hold_seconds` after the claim: a batch that hangs (a
    request or query that never returns) loses its items to another worker instead of
    holding them `running` for as long as this process lives."""

    def __init__(self, max_hold_seconds: float) -> None:
        self._max_hold = max_hold_seconds
        self._claimed_at: dict[int, float] = {}
        self._lock = threading.Lock()

    def add(self, item_ids: Iterable[int]) -> None:
        now = time.monotonic()
        with self._lock:
            self._claimed_at.update(dict.fromkeys(item_ids, now))

    def discard(self, item_ids: Iterable[int]) -> None:
        with self._lock:
            for item_id in item_ids:
                self._claimed_at.pop(item_id, None)

    def current(self) -> list[int]:
        """The ids whose leases should be extended now."""
        cutoff = time.monotonic() - self._max_hold
        with self._lock:
            stuck = sorted(i for i, at in self._claimed_at.items() if at < cutoff)
            for item_id in stuck:
                del self._claimed_at[item_id]
            held = sorted(self._claimed_at)
        if stuck:
            log.error("batch_stuck items=%s: leases left to run out", stuck)
        return held
