"""`tandem up`: the supervised stack, told to people as one line per service.

The terminal gets a ready line per service, the banner, and a line when a service is
restarted; the services' own output goes to their logs (`tandem logs`), or, with
`--verbose`, also to the terminal prefixed by the service's name, as Docker Compose does.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import TextIO

from tandem.local.restarts import RestartPolicy
from tandem.local.service_log_view import render_body
from tandem.local.service_logs import LogRecord
from tandem.local.spec import ServiceSpec, tandem_command
from tandem.local.supervisor import (
    RunningService,
    StackFailed,
    Supervisor,
)

__all__ = ["RunningService", "ServiceSpec", "Stack", "StackFailed", "run_stack", "tandem_command"]

# The launcher the tests drive directly (start, wait_ready, stop).
Stack = Supervisor
NAME_WIDTH = 22
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def display_path(path: Path) -> str:
    """A path as people write it: under the home directory as ~/…"""
    try:
        return f"~/{path.relative_to(Path.home())}"
    except ValueError:
        return str(path)


def _marks(out: TextIO) -> tuple[str, str, str]:
    """✓ ✗ ! where the terminal can show them, else ASCII."""
    try:
        "✓✗".encode(out.encoding or "ascii")
    except (UnicodeEncodeError, LookupError):
        return "ok", "xx", "!!"
    return "✓", "✗", "!"


class Console:
    """What `tandem up` prints; one lock, as verbose output arrives from reader threads."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.ok, self.failed_mark, self.warn = _marks(out)
        self._lock = threading.Lock()

    def line(self, text: str) -> None:
        with self._lock:
            self.out.write(text + "\n")
            self.out.flush()

    def ready(self, service: RunningService, seconds: float) -> None:
        again = f", restart {service.restarts}" if service.restarts else ""
        name, address = service.spec.name, service.spec.address
        self.line(f" {self.ok} {name:<{NAME_WIDTH}} {address:<28} ({seconds:.1f} s{again})")

    def exited(self, service: RunningService, how: str, restart_in: float) -> None:
        name = service.spec.name
        self.line(f" {self.warn} {name} {how}; restarting in {restart_in:.0f} s")

    def not_ready(self, service: RunningService, timeout: float) -> None:
        name = service.spec.name
        self.line(f" {self.warn} {name} was not ready within {timeout:.0f} s after a restart")

    def stale(self, service: RunningService, age: float) -> None:
        name = service.spec.name
        self.line(f" {self.warn} {name} made no progress for {age:.0f} s (heartbeat); killing it")

    def echo(self, record: LogRecord) -> None:
        name = str(record.get("service", ""))
        self.line(f"{name:<{NAME_WIDTH}} | {render_body(record)}")

    def failed(self, error: StackFailed, log_file: Path | None) -> None:
        lines = [f" {self.failed_mark} {error.service} {error.reason}; stopping the stack."]
        if log_file is not None and error.log_tail:
            lines.append(f"   last lines of its log ({display_path(log_file)}):")
            lines += [f"     {line}" for line in error.log_tail.splitlines()]
        elif log_file is not None:
            lines.append(f"   its log is empty: {display_path(log_file)}")
        self.line("\n".join(lines))


def run_stack(
    specs: list[ServiceSpec],
    ready_timeout: float,
    on_ready: str,
    *,
    log_dir: Path | None = None,
    verbose: bool = False,
    policy: RestartPolicy = RestartPolicy(),
    out: TextIO | None = None,
) -> int:
    """Start, supervise until Ctrl-C/SIGTERM (0) or a failure (1), then stop everything."""
    console = Console(out or sys.stdout)
    supervisor = Supervisor(
        log_dir=log_dir,
        policy=policy,
        ready_timeout=ready_timeout,
        report=console,
        echo=console.echo if verbose else None,
    )

    def request_stop(_signum: int, _frame: FrameType | None) -> None:
        supervisor.request_stop()

    previous = {signum: signal.signal(signum, request_stop) for signum in STOP_SIGNALS}
    where = f"; logs in {display_path(log_dir)} (tandem logs -f)" if log_dir is not None else ""
    plural = "" if len(specs) == 1 else "s"
    console.line(f"Starting {len(specs)} service{plural}{where}")
    try:
        if supervisor.start_in_order(specs):
            console.line("")
            console.line(on_ready)
            supervisor.supervise()
        return 0
    except StackFailed as exc:
        console.failed(exc, supervisor.log_path(exc.service))
        return 1
    finally:
        ellipsis = "…" if console.ok == "✓" else "..."
        console.line(f"Stopping{ellipsis} (Ctrl-C again stops at once)")
        supervisor.stop()
        console.line("Stopped.")
        for signum, handler in previous.items():
            signal.signal(signum, handler)
