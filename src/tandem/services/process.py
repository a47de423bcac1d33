"""Waiting for a child server to come up, and stopping it with the signal it prefers."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable

POLL_INTERVAL = 0.05


class ServiceError(RuntimeError):
    """A local server could not be prepared, started, or reached."""


def wait_until(
    ready: Callable[[], bool],
    name: str,
    timeout: float,
    process: subprocess.Popen[bytes] | None = None,
) -> None:
    """Poll `ready` until it is true; fail early if the server's process has exited."""
    deadline = time.monotonic() + timeout
    while True:
        # Checked before `ready`: a server that lost a port race must not pass as ready
        # because someone else answers on that port.
        if process is not None and process.poll() is not None:
            raise ServiceError(f"{name} exited with code {process.returncode}")
        if ready():
            return
        if time.monotonic() >= deadline:
            raise ServiceError(f"{name} was not ready within {timeout:.0f}s")
        time.sleep(POLL_INTERVAL)


def stop(process: subprocess.Popen[bytes], signum: int, timeout: float) -> int:
    """Ask once with `signum`; SIGKILL only if the server has not exited by `timeout`."""
    if process.poll() is None:
        process.send_signal(signum)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode
