"""Each local service's output as JSON lines in its own file, rotated by size.

`tandem up` writes one object per output line: `time`, `service`, `stream` and either
`message` (the raw line) or, for a line that already is a JSON object (our structured
logging), that object's own fields. `tandem logs` reads them back (`service_log_view`).
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import orjson

from tandem.logs import JsonLineFormatter

LogRecord = dict[str, object]
# Our own keys: a child's JSON object cannot overwrite them.
OWN_KEYS = ("time", "service", "stream")
SUFFIX = ".log"
MAX_LINE_BYTES = 64 * 1024  # a longer line is cut into several records


def utc_timestamp(seconds: float) -> str:
    """ISO 8601 in UTC with milliseconds: sorts as text in time order."""
    return (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        + f".{int(seconds * 1000) % 1000:03d}Z"
    )


def log_path(log_dir: Path, service: str) -> Path:
    return log_dir / f"{service}{SUFFIX}"


def generations(path: Path, backups: int) -> list[Path]:
    """The current file and its rotated copies, oldest first: name.log.N … name.log.1, name.log."""
    older = [path.with_name(f"{path.name}.{n}") for n in range(backups, 0, -1)]
    return [*older, path]


def make_record(service: str, stream: str, line: str, now: float) -> LogRecord:
    record: LogRecord = {"time": utc_timestamp(now), "service": service, "stream": stream}
    parsed = _json_object(line)
    if parsed is None:
        record["message"] = line
    else:
        record |= {key: value for key, value in parsed.items() if key not in OWN_KEYS}
    return record


def _json_object(line: str) -> dict[str, object] | None:
    if not line.startswith("{"):
        return None
    try:
        parsed = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return parsed if isinstance(parsed, dict) else None


@dataclass(frozen=True)
class Rotation:
    """Rotate once a file would pass `max_bytes`; keep `backups` older files."""

    max_bytes: int = 10 * 1024 * 1024
    backups: int = 3


class ServiceLog:
    """One service's log file; thread-safe (its stdout and stderr are read by two threads)."""

    def __init__(
        self,
        path: Path,
        service: str,
        rotation: Rotation = Rotation(),
        echo: Callable[[LogRecord], None] | None = None,
    ) -> None:
        self.path = path
        self.service = service
        self.rotation = rotation
        self.echo = echo
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[bytes] = path.open("ab")

    def write(self, stream: str, line: str, now: float | None = None) -> LogRecord:
        record = make_record(self.service, stream, line, time.time() if now is None else now)
        data = orjson.dumps(record, default=str) + b"\n"
        with self._lock:
            if self._file.tell() and self._file.tell() + len(data) > self.rotation.max_bytes:
                self._rotate()
            self._file.write(data)
            self._file.flush()  # `tandem logs -f` and a crash report read it at once
        if self.echo is not None:
            self.echo(record)
        return record

    def _rotate(self) -> None:
        self._file.close()
        files = generations(self.path, self.rotation.backups)
        files[0].unlink(missing_ok=True)  # the oldest goes
        for older, newer in itertools.pairwise(files):
            if newer.exists():
                newer.rename(older)
        self._file = self.path.open("ab")

    def close(self) -> None:
        with self._lock:
            self._file.close()


class ServiceLogHandler(logging.Handler):
    """Python logging into a service log (`tandem up`'s own events), as JSON objects."""

    def __init__(self, service_log: ServiceLog, component: str) -> None:
        super().__init__()
        self.service_log = service_log
        self.setFormatter(JsonLineFormatter(component))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.service_log.write("log", self.format(record))
        except (OSError, ValueError):  # a full disk or a closed file must not stop the stack
            self.handleError(record)


def copy_output(
    pipe: IO[bytes],
    stream: str,
    service_log: ServiceLog,
    ready_output: str | None,
    seen: threading.Event,
) -> None:
    """Copy a child's output into its log, line by line, until the child closes it; set
    `seen` once a line contains `ready_output` (a service that announces its readiness)."""
    with pipe:
        for raw in iter(lambda: pipe.readline(MAX_LINE_BYTES), b""):
            line = raw.decode(errors="replace").rstrip("\r\n")
            if not line.strip():  # blank lines (Celery's banner pads with them) say nothing
                continue
            try:
                service_log.write(stream, line)
            except (OSError, ValueError):  # log closed at shutdown, or a full disk
                continue  # keep draining: a child blocked on a full pipe would hang
            if ready_output is not None and ready_output in line:
                seen.set()
