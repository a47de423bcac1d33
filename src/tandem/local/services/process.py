"""The one process helper: a free port, waiting for a child server to come up (any check,
or an HTTP endpoint answering 200), the tail of its log, and stopping it with the signal
it prefers. `tandem up`, the local database servers, the tests and the benchmarks use it."""

from __future__ import annotations

import socket
import subprocess
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import httpx

POLL_INTERVAL = 0.05
HTTP_POLL_INTERVAL = 0.2
LOOPBACK = "127.0.0.1"


class ServiceError(RuntimeError):
    """A local server could not be prepared, started, or reached."""


def free_port(host: str = LOOPBACK) -> int:
    """A port nobody listens on right now (the kernel's pick; another process may still
    take it before the caller binds it, so servers started on it check their own exit)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def log_tail(path: Path, lines: int = 40) -> str:
    """The last `lines` lines of a text file, "" if it does not exist (yet)."""
    try:
        with path.open(errors="replace") as file:
            return "".join(deque(file, maxlen=lines)).rstrip("\n")
    except FileNotFoundError:
        return ""


def _with_log(message: str, log_path: Path | None) -> str:
    tail = log_tail(log_path) if log_path is not None else ""
    return f"{message}:\n{tail}" if tail else message


def wait_until(
    ready: Callable[[], bool],
    name: str,
    timeout: float,
    process: subprocess.Popen[bytes] | None = None,
    *,
    interval: float = POLL_INTERVAL,
    log_path: Path | None = None,
) -> None:
    """Poll `ready` until it is true; fail early if the server's process has exited. The
    error names the server and, with `log_path`, ends with the tail of its log."""
    deadline = time.monotonic() + timeout
    while True:
        # Checked before `ready`: a server that lost a port race must not pass as ready
        # because someone else answers on that port.
        if process is not None and process.poll() is not None:
            raise ServiceError(_with_log(f"{name} exited with code {process.returncode}", log_path))
        if ready():
            return
        if time.monotonic() >= deadline:
            raise ServiceError(_with_log(f"{name} was not ready within {timeout:.0f}s", log_path))
        time.sleep(interval)


def http_ready(client: httpx.Client, url: str) -> httpx.Response | None:
    """The response of `GET url` if it is a 200, else None (refused, reset, timed out)."""
    try:
        response = client.get(url)
    except httpx.TransportError:
        return None
    return response if response.status_code == 200 else None


def wait_http_ready(
    url: str,
    name: str,
    timeout: float,
    process: subprocess.Popen[bytes] | None = None,
    *,
    log_path: Path | None = None,
) -> httpx.Response:
    """Poll `GET url` until it answers 200 and return that response (see `wait_until`)."""
    answered: list[httpx.Response] = []

    def ready() -> bool:
        response = http_ready(client, url)
        if response is not None:
            answered.append(response)
        return response is not None

    with httpx.Client(timeout=2.0) as client:
        wait_until(ready, name, timeout, process, interval=HTTP_POLL_INTERVAL, log_path=log_path)
    return answered[-1]


def file_age(path: Path, since: float) -> float:
    """Seconds since `path` was last modified, or since `since` (a wall-clock time) if
    that is later or the file is missing."""
    try:
        modified = path.stat().st_mtime
    except FileNotFoundError:
        modified = since
    return time.time() - max(modified, since)


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
