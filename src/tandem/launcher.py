"""`tandem up`: start the stack's processes on one machine and stop them together."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType

import httpx

from tandem.services.privileges import set_parent_death_signal

log = logging.getLogger(__name__)


@dataclass
class ServiceSpec:
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    ready_url: str | None = None
    # For services without an HTTP readiness URL (databases): polled until True.
    ready_check: Callable[[], bool] | None = None
    # What asks this service to stop cleanly: PostgreSQL wants SIGINT (fast shutdown).
    stop_signal: int = signal.SIGTERM


@dataclass
class RunningService:
    spec: ServiceSpec
    process: subprocess.Popen[bytes]


class StackFailed(RuntimeError):
    pass


def _die_with_parent() -> None:
    """The child gets SIGTERM if `tandem up` itself is killed (Linux; no-op elsewhere)."""
    set_parent_death_signal(signal.SIGTERM)


def tandem_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "tandem.cli", *args]


class Stack:
    """Children in start order; stopped in reverse order, each given time to drain."""

    def __init__(self, stop_timeout: float = 35.0) -> None:
        self.services: list[RunningService] = []
        self.stop_timeout = stop_timeout
        self._stopping = False

    def start(self, spec: ServiceSpec) -> RunningService:
        env = os.environ | spec.env
        # Own session: a terminal's Ctrl-C reaches only us, and we send each child a single
        # SIGTERM (a second signal makes uvicorn skip draining).
        process = subprocess.Popen(
            spec.argv, env=env, start_new_session=True, preexec_fn=_die_with_parent
        )
        running = RunningService(spec, process)
        self.services.append(running)
        log.info("service_started name=%s pid=%d", spec.name, process.pid)
        return running

    def wait_ready(self, service: RunningService, timeout: float) -> None:
        spec = service.spec
        if spec.ready_url is None and spec.ready_check is None:
            return
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if service.process.poll() is not None:
                    raise StackFailed(f"{spec.name} exited with code {service.process.returncode}")
                if _is_ready(client, spec):
                    return
                time.sleep(0.2)
        raise StackFailed(f"{spec.name} was not ready within {timeout:.0f}s")

    def watch(self) -> int:
        """Block until a child exits or we are asked to stop; return an exit code."""
        while not self._stopping:
            for service in self.services:
                code = service.process.poll()
                if code is not None:
                    log.error("service_exited name=%s code=%d", service.spec.name, code)
                    return code or 1
            time.sleep(0.5)
        return 0

    def request_stop(self, signum: int, _frame: FrameType | None) -> None:
        log.info("stop_requested signal=%d", signum)
        self._stopping = True

    def stop(self) -> None:
        """Stop in reverse start order, each before the next, so the API server and the
        workers finish with the database before it shuts down."""
        deadline = time.monotonic() + self.stop_timeout
        for service in reversed(self.services):
            if service.process.poll() is None:
                service.process.send_signal(service.spec.stop_signal)
            try:
                service.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("service_killed name=%s", service.spec.name)
                service.process.kill()
                service.process.wait()
            # uvicorn re-raises SIGTERM after a clean shutdown, so -15 is a normal stop.
            log.info(
                "service_stopped name=%s code=%d", service.spec.name, service.process.returncode
            )


def _is_ready(client: httpx.Client, spec: ServiceSpec) -> bool:
    if spec.ready_check is not None:
        return spec.ready_check()
    assert spec.ready_url is not None
    try:
        return client.get(spec.ready_url).status_code == 200
    except httpx.TransportError:
        return False


def run_stack(specs: list[ServiceSpec], ready_timeout: float, on_ready: str) -> int:
    stack = Stack()
    signal.signal(signal.SIGINT, stack.request_stop)
    signal.signal(signal.SIGTERM, stack.request_stop)
    try:
        for spec in specs:
            stack.wait_ready(stack.start(spec), ready_timeout)
        print(on_ready, flush=True)
        return stack.watch()
    except StackFailed as exc:
        log.error("stack_failed error=%s", exc)
        return 1
    finally:
        stack.stop()
