"""Reading the services' JSON-line logs back as readable lines (`tandem logs`, crash reports)."""

from __future__ import annotations

import heapq
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import orjson

from tandem.local.service_logs import SUFFIX, LogRecord, Rotation, generations

# Shown in their own place (or not at all) rather than as key=value.
_LAYOUT_KEYS = {"time", "service", "stream", "ts", "component", "logger", "level", "event"}
_QUIET_LEVELS = {"info", "debug"}
FOLLOW_INTERVAL = 0.25


class UnknownService(ValueError):
    def __init__(self, name: str, known: list[str]) -> None:
        listed = ", ".join(known) if known else "none yet"
        super().__init__(f"unknown service {name!r}; known services: {listed}")
        self.known = known


def services_with_logs(log_dir: Path) -> list[str]:
    return sorted(path.name.removesuffix(SUFFIX) for path in log_dir.glob(f"*{SUFFIX}"))


def resolve_service(name: str, known: Iterable[str]) -> str:
    """`name` itself, or the one known service whose name contains it (`worker`)."""
    names = sorted(set(known))
    if name in names:
        return name
    matches = [known_name for known_name in names if name in known_name]
    if len(matches) == 1:
        return matches[0]
    raise UnknownService(name, names)


def select_logs(log_dir: Path, service: str | None, expected: Iterable[str]) -> list[Path]:
    """The log files `tandem logs [SERVICE]` reads: one service's (by name, or a unique
    part of it), or every service's that has written one."""
    present = services_with_logs(log_dir)
    if service is None:
        return [log_dir / f"{name}{SUFFIX}" for name in present]
    name = resolve_service(service, [*expected, *present])
    return [log_dir / f"{name}{SUFFIX}"]


def render(record: LogRecord, *, with_service: bool = True, width: int = 22) -> str:
    """One readable line (an exception's traceback on the lines after it)."""
    stamp = str(record.get("time", ""))[11:23]
    body = render_body(record)
    if with_service:
        return f"{stamp} {record.get('service', '')!s:<{width}} | {body}"
    return f"{stamp} {body}"


def render_body(record: LogRecord) -> str:
    """A record's text without time and service: a raw line as it was, one of our JSON
    lines as its event (its level unless routine) and key=value fields."""
    if "message" in record and "event" not in record:
        return str(record["message"])
    level = str(record.get("level", "info"))
    parts = [] if level in _QUIET_LEVELS else [level.upper()]
    parts.append(str(record.get("event", "")))
    extra = {k: v for k, v in record.items() if k not in _LAYOUT_KEYS and k != "exception"}
    parts += [f"{key}={value}" for key, value in extra.items()]
    text = " ".join(part for part in parts if part)
    if "exception" in record:
        text += "\n" + str(record["exception"])
    return text


def _parse(line: bytes) -> LogRecord | None:
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None  # a line being written as we read
    return record if isinstance(record, dict) else None


def read_records(path: Path, rotation: Rotation = Rotation()) -> Iterator[LogRecord]:
    """Every record of a service, oldest first, across its rotated files."""
    for file_path in generations(path, rotation.backups):
        try:
            with file_path.open("rb") as file:
                for line in file:
                    record = _parse(line)
                    if record is not None:
                        yield record
        except FileNotFoundError:
            continue


def tail(path: Path, lines: int = 20) -> list[LogRecord]:
    return list(deque(read_records(path), maxlen=lines))


def tail_text(path: Path, lines: int = 20) -> str:
    """The last lines of a service's log, readable (for a crash report)."""
    return "\n".join(render(record, with_service=False) for record in tail(path, lines))


def merged(paths: Iterable[Path]) -> Iterator[LogRecord]:
    """All records of several services, interleaved by time (each file is in time order)."""
    streams = [read_records(path) for path in paths]
    return heapq.merge(*streams, key=lambda record: str(record.get("time", "")))


@dataclass
class _Followed:
    path: Path
    file: IO[bytes] | None = None
    inode: int = -1
    pending: bytes = field(default=b"")

    def read_new(self) -> list[LogRecord]:
        """Complete lines written since the last call; reopens the file after a rotation."""
        records = self._drain()
        try:
            inode = os.stat(self.path).st_ino
        except FileNotFoundError:
            return records
        if inode != self.inode:
            if self.file is not None:
                self.file.close()
            self.file, self.inode, self.pending = self.path.open("rb"), inode, b""
            records += self._drain()
        return records

    def _drain(self) -> list[LogRecord]:
        if self.file is None:
            return []
        data = self.pending + self.file.read()
        complete, _, self.pending = data.rpartition(b"\n")
        parsed = (_parse(line) for line in complete.split(b"\n") if line)
        return [record for record in parsed if record is not None]

    def skip_to_end(self) -> None:
        try:
            self.file = self.path.open("rb")
        except FileNotFoundError:
            return  # not written yet: read from its start once it appears
        self.inode = os.fstat(self.file.fileno()).st_ino
        self.file.seek(0, os.SEEK_END)


class LogFollower:
    """New records of `paths` as they are written, starting from the files' current ends
    (so a caller can open one, print the recent past, then follow without a gap)."""

    def __init__(self, paths: list[Path]) -> None:
        self._followed = [_Followed(path) for path in paths]
        for one in self._followed:
            one.skip_to_end()

    def poll(self) -> list[LogRecord]:
        """What was written since the last poll, in time order."""
        batch = [record for one in self._followed for record in one.read_new()]
        return sorted(batch, key=lambda record: str(record.get("time", "")))

    def records(
        self, stopped: Callable[[], bool] = lambda: False, interval: float = FOLLOW_INTERVAL
    ) -> Iterator[LogRecord]:
        while not stopped():
            batch = self.poll()
            yield from batch
            if not batch:
                time.sleep(interval)
