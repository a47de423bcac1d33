"""What the supervisor needs to run one local service, and the command line that runs a
`tandem` subcommand: here, below both the launcher and the service recipes, so that a recipe
(`services/postgres.py`, ...) builds its spec without importing the launcher."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


def tandem_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "tandem.cli", *args]


@dataclass
class ServiceSpec:
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    ready_url: str | None = None
    # For services without an HTTP readiness URL (databases): polled until True.
    ready_check: Callable[[], bool] | None = None
    # For services with no endpoint at all (the worker): ready once a line of its output
    # contains this text (needs a log directory, where the output is read).
    ready_output: str | None = None
    # What asks this service to stop cleanly: PostgreSQL wants SIGINT (fast shutdown).
    stop_signal: int = signal.SIGTERM
    address: str = ""  # where it serves, for people (the ready line)
    # A file the service touches while it makes progress (the worker's heartbeat): once
    # ready, a run whose file is older than `heartbeat_stale_seconds` is killed (SIGKILL:
    # a process frozen with the GIL held handles no other signal) and restarted.
    heartbeat_file: Path | None = None
    heartbeat_stale_seconds: float = 60.0
