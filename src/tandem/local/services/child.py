"""Serving a local database server as a child of this process while a block runs."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Protocol

from tandem.local.services import privileges
from tandem.local.services.process import stop

STOP_TIMEOUT = 30.0


class LocalServer(Protocol):
    """A prepared server (`LocalPostgres`, `LocalRedis`): its command, the directory it
    runs in, and how to tell it is ready."""

    @property
    def data_dir(self) -> Path: ...

    def argv(self) -> list[str]: ...

    def wait_ready(
        self, timeout: float, process: subprocess.Popen[bytes] | None = None
    ) -> None: ...


@contextmanager
def serving_child(
    server: LocalServer, stop_signal: signal.Signals, timeout: float
) -> Iterator[subprocess.Popen[bytes]]:
    """`server` as a child process, ready, until the block ends; then stopped with
    `stop_signal`. The kernel sends the same signal if we die first (a killed test run or
    `tandem up`), so no server is left holding its data."""
    process = subprocess.Popen(
        server.argv(),
        cwd=server.data_dir,
        preexec_fn=partial(privileges.set_parent_death_signal, stop_signal),
    )
    try:
        server.wait_ready(timeout, process)
        yield process
    finally:
        stop(process, stop_signal, STOP_TIMEOUT)
