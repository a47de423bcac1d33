"""`tandem worker` with a fault a test injects: the product ships no such setting.

Run as `python -m tests.held_worker --concurrency N` with TEST_WORKER_HOLD_AT (a pipeline
stage), TEST_WORKER_HOLD_FILE and optionally TEST_WORKER_HOLD_AFTER in the environment: a
thread reaching that stage (after it was passed HOLD_AFTER times) appends a line to the
file and stops there, for the test to kill the worker at that point."""

from __future__ import annotations

import argparse
import os
import threading
from collections.abc import Sequence
from pathlib import Path

from tandem.commands.common import build_settings
from tandem.config import WorkerSettings
from tandem.logs import configure_logging
from tandem.worker.main import run_worker
from tandem.worker.stages import BatchTimings, Stage

HOLD_AT, HOLD_FILE, HOLD_AFTER = (
    "TEST_WORKER_HOLD_AT",
    "TEST_WORKER_HOLD_FILE",
    "TEST_WORKER_HOLD_AFTER",
)


class HoldAt:
    """Stops every thread that reaches `stage` after it was passed `after` times, after
    appending `<stage> <item ids>` to `path` (flushed) and setting `arrived`, until
    `release()` (a test in this process) or forever (a worker a test is about to kill)."""

    def __init__(self, stage: Stage, path: Path, after: int = 0) -> None:
        self.stage = stage
        self.arrived = threading.Event()
        self._path = path
        self._passes_left = after
        self._lock = threading.Lock()
        self._released = threading.Event()

    def reached(self, stage: Stage, item_ids: Sequence[int]) -> None:
        if stage is not self.stage or self._released.is_set():
            return
        with self._lock:
            self._passes_left -= 1
            if self._passes_left >= 0:
                return
        with self._path.open("a") as out:
            out.write(f"{stage} {','.join(map(str, item_ids))}\n")
        self.arrived.set()
        self._released.wait()

    def release(self) -> None:
        self._released.set()

    def batch_done(self, timings: BatchTimings) -> None:
        return None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--concurrency", type=int, default=None)
    args = parser.parse_args()
    configure_logging("worker")
    hold = HoldAt(
        Stage(os.environ[HOLD_AT]),
        Path(os.environ[HOLD_FILE]),
        int(os.environ.get(HOLD_AFTER, "0")),
    )
    run_worker(build_settings(WorkerSettings, concurrency=args.concurrency), [hold])


if __name__ == "__main__":
    main()
