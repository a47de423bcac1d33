"""A one-host signal from the inference role to the indexing role: "queries in flight".

CPU priority does not protect a query from the indexing role's forward passes on the other
cores (shared cache and memory bandwidth), and one forward pass of a 64-passage request
lasts about a second. Where both roles share a host (`tandem up`), they map one small file
(`TANDEM_QUERY_SIGNAL_FILE`): the inference role writes how many queries are in flight and
when that last changed; the indexing role cuts its batches into short sub-batches and,
before each, waits while queries are in flight or ended less than `quiet` ago, up to
`max_wait` (so a stream of queries slows bulk work but never stops it).

Without the setting (the roles on different hosts) nothing is written or read. A missing
file means no waiting, and so does a count left by a writer that died: a change older
than `stale` is not believed.
"""

from __future__ import annotations

import mmap
import os
import struct
import time
from pathlib import Path
from typing import Protocol

# In-flight queries, and the CLOCK_MONOTONIC time (ns) of the last change: one clock for
# every process on the host.
LAYOUT = struct.Struct("<QQ")
# A query in flight longer than this is a writer that died mid-query.
STALE_SECONDS = 2.0
POLL_SECONDS = 0.0005
# How often a reader looks again for a file that is not there yet.
REOPEN_SECONDS = 1.0


class QueryActivity(Protocol):
    """What the inference role tells about its queries."""

    def begin(self) -> None: ...

    def end(self) -> None: ...

    def close(self) -> None: ...


class QuietWait(Protocol):
    """What the indexing role asks before each sub-batch."""

    def wait_quiet(self) -> float:
        """Block while queries are active; return the seconds waited."""
        ...

    def close(self) -> None: ...


class NoSignal:
    """Roles on different hosts: announces nothing, never waits."""

    def begin(self) -> None:
        pass

    def end(self) -> None:
        pass

    def wait_quiet(self) -> float:
        return 0.0

    def close(self) -> None:
        pass


class QuerySignal:
    """The writer (inference role). Called from the event loop only: one writer thread."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Never truncated or replaced: a reader that mapped it earlier keeps seeing it.
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < LAYOUT.size:
                os.ftruncate(fd, LAYOUT.size)
            self._map = mmap.mmap(fd, LAYOUT.size)
        finally:
            os.close(fd)
        self._in_flight = 0
        self._publish()  # a restarted writer clears what a dead one left

    def _publish(self) -> None:
        LAYOUT.pack_into(self._map, 0, self._in_flight, time.monotonic_ns())

    def begin(self) -> None:
        self._in_flight += 1
        self._publish()

    def end(self) -> None:
        self._in_flight = max(0, self._in_flight - 1)
        self._publish()

    def close(self) -> None:
        self._in_flight = 0
        self._publish()
        self._map.close()


class QueryWatch:
    """The reader (indexing role)."""

    def __init__(self, path: Path, *, quiet: float, max_wait: float) -> None:
        self.path = path
        self.quiet_ns = int(quiet * 1e9)
        self.max_wait = max_wait
        self._map: mmap.mmap | None = None
        self._next_open = 0.0

    def _mapped(self) -> mmap.mmap | None:
        if self._map is None and time.monotonic() >= self._next_open:
            self._next_open = time.monotonic() + REOPEN_SECONDS
            try:
                fd = os.open(self.path, os.O_RDONLY)
            except FileNotFoundError:
                return None
            try:
                if os.fstat(fd).st_size >= LAYOUT.size:
                    self._map = mmap.mmap(fd, LAYOUT.size, prot=mmap.PROT_READ)
            finally:
                os.close(fd)
        return self._map

    def busy(self) -> bool:
        """Queries in flight, or the last one ended less than `quiet` ago."""
        mapped = self._mapped()
        if mapped is None:
            return False
        in_flight, changed = LAYOUT.unpack_from(mapped, 0)
        since = time.monotonic_ns() - int(changed)
        if int(in_flight):
            return since < STALE_SECONDS * 1e9
        return since < self.quiet_ns

    def wait_quiet(self) -> float:
        started = time.monotonic()
        waited = 0.0
        while waited < self.max_wait and self.busy():
            time.sleep(POLL_SECONDS)
            waited = time.monotonic() - started
        return waited

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None
