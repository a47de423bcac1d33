"""Run local services as child processes: start them in order, each once the one before is
ready; restart one that exits (backoff, `tandem.local.restarts`) while the others keep serving;
give up on a crash loop; stop them in reverse order."""

from __future__ import annotations

import functools
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import httpx

from tandem.local.restarts import ExitHistory, RestartPolicy
from tandem.local.service_log_view import tail_text
from tandem.local.service_logs import LogRecord, Rotation, ServiceLog, copy_output, log_path
from tandem.local.services.privileges import die_with_parent
from tandem.local.services.process import file_age, http_ready
from tandem.local.spec import ServiceSpec

log = logging.getLogger(__name__)

TICK_SECONDS = 0.2
STOP_POLL_SECONDS = 0.1  # how soon a second Ctrl-C takes effect while stopping
TAIL_LINES = 20


@dataclass
class RunningService:
    spec: ServiceSpec
    process: subprocess.Popen[bytes]
    history: ExitHistory
    started_at: float
    ready_deadline: float
    output_seen: threading.Event = field(default_factory=threading.Event)
    ready: bool = False
    was_ready: bool = False  # in any run: an exit before the first ready fails the stack
    restart_at: float | None = None
    restarts: int = 0
    # The threads copying this run's output to the log (joined before reading its tail).
    pumps: list[threading.Thread] = field(default_factory=list)
    spawned_at: float = field(default_factory=time.time)  # wall clock, as file times are
    killed_stale: bool = False


class StackFailed(RuntimeError):
    """A service failed to start, or crash-looped; carries the tail of its log."""

    def __init__(self, service: str, reason: str, log_tail: str = "") -> None:
        super().__init__(f"{service} {reason}")
        self.service = service
        self.reason = reason
        self.log_tail = log_tail


class SupervisorReport(Protocol):
    """What people are told as services come and go (`tandem up` prints it)."""

    def ready(self, service: RunningService, seconds: float) -> None: ...
    def exited(self, service: RunningService, how: str, restart_in: float) -> None: ...
    def not_ready(self, service: RunningService, timeout: float) -> None: ...
    def stale(self, service: RunningService, age: float) -> None: ...


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


class Supervisor:
    """Children in start order. With `log_dir`, each child's stdout and stderr go to its
    own JSON-lines log there (and to `echo`); without, they share our terminal."""

    def __init__(
        self,
        *,
        log_dir: Path | None = None,
        policy: RestartPolicy = RestartPolicy(),
        ready_timeout: float = 120.0,
        stop_timeout: float = 35.0,
        report: SupervisorReport | None = None,
        echo: Callable[[LogRecord], None] | None = None,
        rotation: Rotation = Rotation(),
    ) -> None:
        self.services: list[RunningService] = []
        self.log_dir = log_dir
        self.policy = policy
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        self.report = report
        self._echo = echo
        self._rotation = rotation
        self._logs: dict[str, ServiceLog] = {}
        self._stop_requested = False
        self._shutting_down = False
        self._kill_now = False
        self._http = httpx.Client(timeout=2.0)

    # --- starting --------------------------------------------------------------------

    def start(self, spec: ServiceSpec) -> RunningService:
        now, seen = time.monotonic(), threading.Event()
        pumps: list[threading.Thread] = []
        process = self._spawn(spec, seen, pumps)
        service = RunningService(
            spec,
            process,
            ExitHistory(self.policy),
            now,
            now + self.ready_timeout,
            seen,
            pumps=pumps,
        )
        self.services.append(service)
        return service

    def start_in_order(self, specs: list[ServiceSpec]) -> bool:
        """Start each once the one before is ready; False if a stop was requested first."""
        for spec in specs:
            self.wait_ready(self.start(spec), self.ready_timeout)
            if self.stopping:
                return False
        return True

    def wait_ready(self, service: RunningService, timeout: float) -> None:
        """Supervise everything until `service` is ready (or a stop is requested)."""
        service.ready_deadline = time.monotonic() + timeout
        self.supervise(until=lambda: service.ready)

    def supervise(self, until: Callable[[], bool] = lambda: False) -> None:
        """Restart what exits until a stop is requested or `until()`; raises StackFailed when
        a service fails to start or crash-loops. Call it from the thread that started the
        services: they are told to exit when that thread ends (parent-death signal)."""
        while not self.stopping and not until():
            self.tick()
            if not until():
                time.sleep(TICK_SECONDS)

    @property
    def stopping(self) -> bool:
        return self._stop_requested

    def request_stop(self) -> None:
        """Safe from a signal handler (it takes no lock): the loop returns within a tick.
        Asked again while stopping (a second Ctrl-C), the rest are killed without waiting."""
        if self._shutting_down:
            self._kill_now = True
        self._stop_requested = True

    # --- one round of supervision -------------------------------------------------------

    def tick(self) -> None:
        for service in self.services:
            if not self.stopping:
                self._check(service, time.monotonic())

    def _check(self, service: RunningService, now: float) -> None:
        if service.restart_at is not None:
            if now >= service.restart_at:
                self._restart(service, now)
            return
        code = service.process.poll()
        if code is not None:
            self._exited(service, code, now)
        elif service.ready:
            self._check_heartbeat(service)
        else:
            if self._is_ready(service):
                service.ready = service.was_ready = True
                log.info("service_ready name=%s restarts=%d", service.spec.name, service.restarts)
                if self.report is not None:
                    self.report.ready(service, now - service.started_at)
            elif now >= service.ready_deadline:
                timeout = service.ready_deadline - service.started_at
                if not service.was_ready:
                    raise self._failure(service, f"was not ready within {timeout:.0f}s")
                # A restart that hangs is a failed restart: it counts towards a crash loop.
                log.warning("service_not_ready name=%s timeout=%.0fs", service.spec.name, timeout)
                if self.report is not None:
                    self.report.not_ready(service, timeout)
                service.process.kill()

    def _check_heartbeat(self, service: RunningService) -> None:
        path = service.spec.heartbeat_file
        if path is None or service.killed_stale:
            return
        age = file_age(path, since=service.spawned_at)  # an earlier run's file is not this one's
        if age <= service.spec.heartbeat_stale_seconds:
            return
        log.warning("service_stale name=%s heartbeat_age=%.0fs", service.spec.name, age)
        if self.report is not None:
            self.report.stale(service, age)
        service.killed_stale = True
        service.process.kill()  # the exit is then restarted as any other

    def _exited(self, service: RunningService, code: int, now: float) -> None:
        how = describe_exit(code)
        delay = service.history.restart_delay(now, now - service.started_at)
        if not service.was_ready:
            raise self._failure(service, f"{how} before it was ready")
        if delay is None:
            window = self.policy.crash_loop_window
            exits = service.history.recent_exits
            raise self._failure(service, f"{how}: {exits} exits within {window:.0f}s, a crash loop")
        service.ready = False
        service.restart_at = now + delay
        log.warning("service_exited name=%s %s restart_in=%.1fs", service.spec.name, how, delay)
        if self.report is not None:
            self.report.exited(service, how, delay)

    def _restart(self, service: RunningService, now: float) -> None:
        service.restart_at = None
        service.restarts += 1
        service.started_at, service.ready_deadline = now, now + self.ready_timeout
        service.output_seen.clear()
        service.pumps = []
        service.killed_stale = False
        service.spawned_at = time.time()
        service.process = self._spawn(service.spec, service.output_seen, service.pumps)

    def _is_ready(self, service: RunningService) -> bool:
        spec = service.spec
        if spec.ready_check is not None:
            return spec.ready_check()
        if spec.ready_url is not None:
            return http_ready(self._http, spec.ready_url) is not None
        if spec.ready_output is not None:
            return service.output_seen.is_set()
        return True

    def _failure(self, service: RunningService, reason: str) -> StackFailed:
        log.error("service_failed name=%s %s", service.spec.name, reason)
        if service.process.poll() is not None:
            for pump in service.pumps:  # its last words are what the tail is for
                pump.join(timeout=1.0)
        path = self.log_path(service.spec.name)
        tail = tail_text(path, TAIL_LINES) if path is not None else ""
        return StackFailed(service.spec.name, reason, tail)

    # --- processes and their output -------------------------------------------------------

    def log_path(self, name: str) -> Path | None:
        return None if self.log_dir is None else log_path(self.log_dir, name)

    def _spawn(
        self, spec: ServiceSpec, seen: threading.Event, pumps: list[threading.Thread]
    ) -> subprocess.Popen[bytes]:
        env = os.environ | spec.env
        captured = self.log_dir is not None
        # Own session: a terminal's Ctrl-C reaches only us, and we send each child a single
        # signal (a second one makes uvicorn skip draining).
        process = subprocess.Popen(
            spec.argv,
            env=env,
            start_new_session=True,
            # SIGKILL when we end without stopping it (see `die_with_parent`).
            preexec_fn=functools.partial(die_with_parent, os.getpid()),
            stdout=subprocess.PIPE if captured else None,
            stderr=subprocess.PIPE if captured else None,
        )
        log.info("service_started name=%s pid=%d", spec.name, process.pid)
        if captured:
            service_log = self._service_log(spec.name)
            for stream, pipe in (("stdout", process.stdout), ("stderr", process.stderr)):
                assert pipe is not None
                pump = threading.Thread(
                    target=copy_output,
                    args=(pipe, stream, service_log, spec.ready_output, seen),
                    name=f"log-{spec.name}-{stream}",
                    daemon=True,  # a grandchild holding the pipe must not keep us alive
                )
                pump.start()
                pumps.append(pump)
        return process

    def _service_log(self, name: str) -> ServiceLog:
        if name not in self._logs:
            path = self.log_path(name)
            assert path is not None
            self._logs[name] = ServiceLog(path, name, self._rotation, self._echo)
        return self._logs[name]

    # --- stopping ------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop in reverse start order, each before the next, so the API server and the
        workers finish with the database before it shuts down; SIGKILL after the grace."""
        self._stop_requested = self._shutting_down = True
        deadline = time.monotonic() + self.stop_timeout
        for service in reversed(self.services):
            process = service.process
            if process.poll() is None and not self._kill_now:
                process.send_signal(service.spec.stop_signal)
            while process.poll() is None:
                if self._kill_now or time.monotonic() >= deadline:
                    log.warning("service_killed name=%s", service.spec.name)
                    process.kill()
                with suppress(subprocess.TimeoutExpired):
                    process.wait(STOP_POLL_SECONDS)
            # uvicorn re-raises SIGTERM after a clean shutdown, so -15 is a normal stop.
            log.info("service_stopped name=%s code=%d", service.spec.name, process.returncode)
        for pump in (pump for service in self.services for pump in service.pumps):
            pump.join(timeout=2.0)
        for service_log in self._logs.values():
            service_log.close()
        self._http.close()
