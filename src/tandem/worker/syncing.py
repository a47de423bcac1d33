"""The worker's side of source syncs: take a due source's lease and run its sync.

Every worker polls (from its sweep, and when the API asks for a sync now), so syncs need
no scheduler process of their own; the lease on the source's row keeps it to one sync of a
source at a time. Each worker runs at most one sync at once, in a thread of its own, with a
heartbeat that extends the lease while the walk goes on.
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy.orm import Session, sessionmaker

from tandem.db import sources
from tandem.sources.sync import Syncer
from tandem.worker.sweep import Periodic

log = logging.getLogger(__name__)


class SyncRunner:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        syncer: Syncer,
        owner: str,
        lease_seconds: float,
    ) -> None:
        self._sessions = sessions
        self._syncer = syncer
        self._owner = owner
        self._lease_seconds = lease_seconds
        self._lock = threading.Lock()
        self._running: threading.Thread | None = None

    def poll(self) -> str | None:
        """Start the sync of a due source unless this worker runs one; its name."""
        with self._lock:
            if self._running is not None and self._running.is_alive():
                return None
            with self._sessions.begin() as session:
                claimed = sources.claim_due(session, self._owner, self._lease_seconds)
            if claimed is None:
                return None
            self._running = threading.Thread(
                target=self._run, args=(claimed,), name=f"sync-{claimed.name}", daemon=True
            )
            self._running.start()
            return claimed.name

    def wait(self, timeout: float | None = None) -> None:
        """Until the sync running now (if any) ends."""
        running = self._running
        if running is not None:
            running.join(timeout)

    def _run(self, claimed: sources.ClaimedSource) -> None:
        def extend() -> None:
            with self._sessions.begin() as session:
                if not sources.extend_lease(session, claimed, self._lease_seconds):
                    log.warning("sync_lease_lost source=%s", claimed.name)

        heartbeat = Periodic("sync-heartbeat", self._lease_seconds / 3, extend)
        heartbeat.start()
        try:
            self._syncer.run(claimed)
        finally:
            heartbeat.stop()
