"""The worker's liveness: a file touched only while the worker makes progress, and a
watchdog that needs no GIL.

A thread stuck in C code holding the GIL (a parser, a regular expression) stops every
other thread: Celery's loop, the lease heartbeat, and any Python-level signal handler,
SIGTERM's included. So liveness is told by what such a worker cannot do:

* a Python thread touches the heartbeat file every few seconds, and only while every
  expected mark (the Celery consumer's loop, the lease heartbeat) beat recently; a probe
  reads the file's age without asking the worker anything (Compose's health check, the
  Kubernetes liveness probe, `tandem up`'s supervisor);
* the same thread re-arms faulthandler's timer at each touch. That timer runs in a C
  thread that needs no GIL: when no touch re-arms it within `stale_seconds`, it writes
  every thread's stack to stderr (where it was stuck) and exits the process (code 1), so
  the platform's restart policy starts a fresh worker, PID 1 in a container included (a
  signal from a watchdog process could not kill PID 1 there).
"""

from __future__ import annotations

import faulthandler
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from celery import Celery, bootsteps

log = logging.getLogger(__name__)

CELERY_LOOP = "celery-loop"
LEASE_HEARTBEAT = "lease-heartbeat"
LOOP_BEAT_SECONDS = 1.0
STDERR = 2  # the descriptor, not sys.stderr: Celery replaces that with a logging proxy


class Liveness:
    def __init__(
        self,
        path: Path,
        *,
        interval: float,
        stale_seconds: float,
        watchdog: bool,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.interval = interval
        self.stale_seconds = stale_seconds
        self.watchdog = watchdog
        self._clock = clock
        self._marks: dict[str, tuple[float, float]] = {}  # name -> (last beat, allowance)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="liveness", daemon=True)
        self._reported: tuple[str, ...] = ()

    # --- marks -------------------------------------------------------------------------

    def expect(self, name: str, every: float) -> None:
        """From now on `name` must beat (about every `every` seconds) for the file to be
        touched. It may miss a few beats: the allowance is half the stale time, or three
        intervals when those are longer."""
        allowance = max(self.stale_seconds / 2, 3 * every)
        with self._lock:
            self._marks[name] = (self._clock(), allowance)
        log.info("liveness_expects mark=%s allowance=%.0fs", name, allowance)

    def forget(self, name: str) -> None:
        """`name` is no longer expected (its loop stopped on purpose: a broker reconnect,
        a shutdown)."""
        with self._lock:
            expected = self._marks.pop(name, None) is not None
        if expected:
            log.info("liveness_forgets mark=%s", name)

    def beat(self, name: str) -> None:
        with self._lock:
            if name in self._marks:
                self._marks[name] = (self._clock(), self._marks[name][1])

    def stalled(self) -> list[str]:
        now = self._clock()
        with self._lock:
            return sorted(n for n, (last, allowed) in self._marks.items() if now - last > allowed)

    # --- the heartbeat thread ------------------------------------------------------------

    def start(self) -> None:
        self.touch()
        self._arm()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(self.interval + 5.0)
        if self.watchdog:
            faulthandler.cancel_dump_traceback_later()

    def check(self) -> bool:
        """One round: touch and re-arm if every mark is fresh; True if it did."""
        stalled = tuple(self.stalled())
        if stalled:
            if stalled != self._reported:
                log.error("worker_stalled marks=%s heartbeat=stopped", ",".join(stalled))
            self._reported = stalled
            return False
        if self._reported:
            log.warning("worker_progressing_again")
            self._reported = ()
        self.touch()
        self._arm()
        return True

    def touch(self) -> None:
        try:
            os.utime(self.path)
        except FileNotFoundError:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.touch()

    def _arm(self) -> None:
        if self.watchdog:
            faulthandler.dump_traceback_later(self.stale_seconds, exit=True, file=STDERR)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.check()
            except OSError as exc:  # an unwritable file: the probes will say so
                log.error("heartbeat_file_failed path=%s error=%s", self.path, exc)


def watch_celery_loop(app: Celery, liveness: Liveness) -> None:
    """Expect the Celery consumer's event loop to beat while it runs: a timer entry on its
    own loop (the main thread) beats every second. The consumer stops its steps before a
    broker reconnect and at shutdown, and starts them again after: the mark is expected
    only while the loop is meant to run."""

    class LoopBeat(bootsteps.StartStopStep):  # type: ignore[misc]
        requires = ("celery.worker.consumer.tasks:Tasks",)

        def __init__(self, parent: Any, **kwargs: Any) -> None:
            super().__init__(parent, **kwargs)
            self.entry: Any = None

        def start(self, consumer: Any) -> None:
            liveness.expect(CELERY_LOOP, LOOP_BEAT_SECONDS)
            self.entry = consumer.timer.call_repeatedly(
                LOOP_BEAT_SECONDS, liveness.beat, (CELERY_LOOP,)
            )

        def stop(self, consumer: Any) -> None:
            liveness.forget(CELERY_LOOP)
            if self.entry is not None:
                self.entry.cancel()
                self.entry = None

        shutdown = stop

    app.steps["consumer"].add(LoopBeat)
