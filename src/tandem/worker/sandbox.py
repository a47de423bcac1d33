"""Each document parsed in a child process, so that no file can stop indexing.

A hostile or broken file can make a parser loop, allocate without bound, or crash in C; in
the worker's own process that would stall its threads (a regex holds the GIL, so even the
lease heartbeat stops) or take the worker down. Here a small warm pool of children
(worker/sandbox_child.py) parses under a memory limit (RLIMIT_AS) and a CPU limit
(RLIMIT_CPU), and the parent enforces a wall-clock timeout: it waits on a pipe, holding no
lock and not the GIL, and kills a child that overruns. The file fails alone with a
ParseError saying which limit it met; a fresh child replaces the dead one in the
background while the caller moves on.

Plain subprocesses speaking frames over pipes, rather than multiprocessing: no pickle
from the child, nothing of the parent's state (its threads, sockets, environment) passes
over, and the child's code is exactly `tandem.worker.sandbox_child`. A child takes about a
second to start (the parsing libraries' imports); a request costs a millisecond or so
more than parsing in process (benchmarks/hostile_files.py measures both). Children are
started by one long-lived thread of the pool, because the parent-death signal follows the
thread that started a child: a caller's thread may end, the pool's thread ends only when
the pool is closed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import queue
import selectors
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import tandem
from tandem.documents import (
    CorruptFile,
    EmptyDocument,
    ParsedDocument,
    ParseError,
    UnsupportedFileType,
)
from tandem.worker.limits import ParseLimits
from tandem.worker.sandbox_child import FRAME_HEADER, peak_rss_bytes

log = logging.getLogger(__name__)

GIB = 1024**3
# What the child may see of the worker's environment: no database or broker credentials.
_CHILD_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "HOME")
_ERRORS: dict[str, type[ParseError]] = {
    cls.__name__: cls for cls in (ParseError, UnsupportedFileType, CorruptFile, EmptyDocument)
}
_MAX_HEADER_BYTES = 16 * 1024 * 1024


class ParseTimeout(ParseError):
    """Parsing took longer than the wall-clock limit; the child was killed."""


class ParseMemoryExceeded(ParseError):
    """Parsing needed more memory than its limit allows."""


class ParseCpuExceeded(ParseError):
    """Parsing used more CPU time than its limit allows; the kernel ended the child."""


class ParserCrashed(ParseError):
    """The parser failed in a way no extractor expected (a library bug, a crash in C)."""


class SandboxUnavailable(RuntimeError):
    """No child process could be started: parsing cannot happen (not the file's fault)."""


@dataclass(frozen=True, slots=True)
class SandboxLimits:
    timeout_seconds: float = 30.0
    memory_bytes: int = GIB
    cpu_seconds: float | None = None  # None: the timeout (a parse is single-threaded)
    workers: int = 1
    startup_seconds: float = 60.0


@dataclass(frozen=True, slots=True)
class ParseOutcome:
    """One parse through the sandbox: the document or the error, and what it cost."""

    document: ParsedDocument | None
    error: ParseError | None
    seconds: float
    peak_rss_bytes: int | None  # the child's peak resident memory during this parse


class _ChildGone(Exception):
    """The child's pipe closed: it exited or was killed."""


class _Child:
    """One child process and its two pipe ends (both non-blocking, waited on with select)."""

    def __init__(self, config: dict[str, object]) -> None:
        source = str(Path(tandem.__file__).resolve().parents[1])
        env = {k: os.environ[k] for k in _CHILD_ENV if k in os.environ}
        env["PYTHONPATH"] = os.pathsep.join(
            [source, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
        )
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tandem.worker.sandbox_child", json.dumps(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        self._out = self.process.stdin.fileno()
        self._in = self.process.stdout.fileno()
        os.set_blocking(self._out, False)
        os.set_blocking(self._in, False)
        self.pid = self.process.pid

    def exchange(
        self, header: dict[str, object], body: bytes, deadline: float, max_body: int
    ) -> tuple[dict[str, object], bytes]:
        """Send a frame (unless header is empty) and read the reply before `deadline`;
        TimeoutError past it, _ChildGone if the child's pipe closes."""
        if header:
            encoded = json.dumps(header).encode()
            self._send(FRAME_HEADER.pack(len(encoded), len(body)) + encoded + body, deadline)
        header_length, body_length = FRAME_HEADER.unpack(self._receive(FRAME_HEADER.size, deadline))
        if header_length > _MAX_HEADER_BYTES or body_length > max_body:
            raise _ChildGone(f"the parser sent a reply of {header_length + body_length} bytes")
        reply = json.loads(self._receive(header_length, deadline))
        if not isinstance(reply, dict):
            raise _ChildGone("the parser sent a malformed reply")
        return reply, self._receive(body_length, deadline)

    def _send(self, data: bytes, deadline: float) -> None:
        view = memoryview(data)
        with selectors.DefaultSelector() as selector:
            selector.register(self._out, selectors.EVENT_WRITE)
            while view:
                if not selector.select(_left(deadline)):
                    raise TimeoutError
                try:
                    view = view[os.write(self._out, view[: 1 << 20]) :]
                except BrokenPipeError as exc:
                    raise _ChildGone("the parser's input closed") from exc

    def _receive(self, size: int, deadline: float) -> bytes:
        chunks: list[bytes] = []
        with selectors.DefaultSelector() as selector:
            selector.register(self._in, selectors.EVENT_READ)
            while size:
                if not selector.select(_left(deadline)):
                    raise TimeoutError
                chunk = os.read(self._in, min(size, 1 << 20))
                if not chunk:
                    raise _ChildGone("the parser's output closed")
                chunks.append(chunk)
                size -= len(chunk)
        return b"".join(chunks)

    def kill(self) -> int | None:
        """Kill the child and reap it; its exit status (negative: the signal)."""
        if self.process.poll() is None:
            self.process.kill()
        try:
            return self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:  # not reaped yet (a D-state child); let it be
            return None
        finally:
            for pipe in (self.process.stdin, self.process.stdout):
                if pipe is not None:
                    pipe.close()

    def stop(self) -> None:
        """Close its input (it exits at the EOF), then kill it if it lingers."""
        if self.process.stdin is not None:
            self.process.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=2)
        self.kill()


def _left(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())


class SandboxedParser:
    """A DocumentParser that parses each upload in a child process, under the limits."""

    def __init__(
        self, limits: SandboxLimits | None = None, parse_limits: ParseLimits | None = None
    ) -> None:
        self.limits = limits or SandboxLimits()
        self.parse_limits = parse_limits or ParseLimits()
        cpu = self.limits.cpu_seconds or self.limits.timeout_seconds
        # A little over the wall-clock limit, so that a busy loop is reported as a timeout.
        self._cpu_seconds = cpu + 1.0 if self.limits.cpu_seconds is None else cpu
        self._idle: queue.Queue[_Child] = queue.Queue()
        self._wanted: queue.Queue[bool] = queue.Queue()
        self._children: set[_Child] = set()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._failure: str | None = None  # why the last child could not start
        self._starter = threading.Thread(target=self._start_children, name="parse-sandbox")
        self._starter.daemon = True
        self._starter.start()
        for _ in range(self.limits.workers):
            self._wanted.put(True)

    # -- the DocumentParser protocol

    def parse(self, filename: str, data: bytes, content_type: str | None) -> ParsedDocument:
        outcome = self.run(filename, data, content_type)
        if outcome.error is not None:
            raise outcome.error
        assert outcome.document is not None
        return outcome.document

    def close(self) -> None:
        self._closed.set()
        self._wanted.put(False)
        self._starter.join(timeout=self.limits.startup_seconds)
        with self._lock:
            children, self._children = set(self._children), set()
        for child in children:
            child.stop()

    # -- the pool

    def child_pids(self) -> list[int]:
        with self._lock:
            return sorted(child.pid for child in self._children)

    def wait_ready(self, timeout: float) -> bool:
        """Whether all the pool's children are started and idle within `timeout`."""
        deadline = time.monotonic() + timeout
        while self._idle.qsize() < self.limits.workers:
            if time.monotonic() > deadline or self._closed.is_set():
                return False
            time.sleep(0.02)
        return True

    def run(self, filename: str, data: bytes, content_type: str | None) -> ParseOutcome:
        """Parse in a child; the outcome says what it cost. Waits for a free child."""
        child = self._take()
        started = time.monotonic()
        deadline = started + self.limits.timeout_seconds
        max_body = 4 * self.parse_limits.max_extracted_chars + 1024
        request: dict[str, object] = {"filename": filename, "content_type": content_type}
        try:
            reply, body = child.exchange(request, data, deadline, max_body)
        except TimeoutError:
            at_kill = peak_rss_bytes(child.pid)
            self._replace(child)
            limit = _seconds(self.limits.timeout_seconds)
            log.warning("parse_timeout file=%r limit=%s", filename, limit)
            error = ParseTimeout(filename, f"parsing took longer than {limit}")
            return ParseOutcome(None, error, time.monotonic() - started, at_kill)
        except _ChildGone as gone:
            return self._died(child, filename, started, str(gone))
        if "crash" in reply:
            return self._died(child, filename, started, str(reply["crash"]))
        seconds = time.monotonic() - started
        peak = reply.get("peak_rss")
        peak_bytes = peak if isinstance(peak, int) else None
        if reply.get("error") == "memory":
            self._replace(child)
            memory = f"parsing needed more than {self._memory()} of memory"
            return ParseOutcome(None, ParseMemoryExceeded(filename, memory), seconds, peak_bytes)
        self._idle.put(child)
        if "error" in reply:
            kind = _ERRORS.get(str(reply["error"]), ParseError)
            failure = kind(str(reply.get("filename", filename)), str(reply.get("detail", "")))
            return ParseOutcome(None, failure, seconds, peak_bytes)
        return ParseOutcome(_document(reply, body), None, seconds, peak_bytes)

    def _died(self, child: _Child, filename: str, started: float, why: str) -> ParseOutcome:
        peak = peak_rss_bytes(child.pid)
        status = self._replace(child)
        elapsed = time.monotonic() - started
        error: ParseError
        if status == -signal.SIGXCPU:
            limit = _seconds(self._cpu_seconds)
            error = ParseCpuExceeded(filename, f"parsing used more than {limit} of CPU time")
        elif status == -signal.SIGKILL:  # no one here sent it: the kernel's OOM killer
            error = ParseMemoryExceeded(filename, "parsing was killed, out of memory")
        else:
            what = _signal_name(status) or why or f"exit status {status}"
            error = ParserCrashed(filename, f"the parser failed ({what})")
        log.warning("parse_crashed file=%r status=%s reason=%s", filename, status, why)
        return ParseOutcome(None, error, elapsed, peak)

    def _memory(self) -> str:
        size = self.limits.memory_bytes
        return f"{size / GIB:g} GiB" if size >= GIB else f"{size // 1024**2} MiB"

    def _take(self) -> _Child:
        while True:
            if self._closed.is_set():
                raise SandboxUnavailable("the parser pool is closed")
            try:
                return self._idle.get(timeout=0.5)
            except queue.Empty:
                failure = self._failure
                if failure is not None and not self._children:
                    raise SandboxUnavailable(
                        f"no parser process could be started: {failure}"
                    ) from None

    def _replace(self, child: _Child) -> int | None:
        with self._lock:
            self._children.discard(child)
        status = child.kill()
        if not self._closed.is_set():
            self._wanted.put(True)
        return status

    def _start_children(self) -> None:
        """The pool's starter thread: one child per request on `_wanted`, until closed."""
        delay = 0.5
        while self._wanted.get():
            while not self._closed.is_set():
                try:
                    child = self._start_child()
                except (OSError, TimeoutError, _ChildGone) as exc:
                    self._failure = str(exc) or type(exc).__name__
                    log.error("parse_sandbox_start_failed error=%s", self._failure)
                    self._closed.wait(delay)
                    delay = min(delay * 2, 30.0)
                    continue
                self._failure, delay = None, 0.5
                self._idle.put(child)
                break

    def _start_child(self) -> _Child:
        config: dict[str, object] = {
            "parent": os.getpid(),
            "memory_bytes": self.limits.memory_bytes,
            "cpu_seconds": self._cpu_seconds,
            "max_extracted_chars": self.parse_limits.max_extracted_chars,
        }
        child = _Child(config)
        with self._lock:
            if self._closed.is_set():
                child.kill()
                raise _ChildGone("the pool closed")
            self._children.add(child)
        try:
            ready, _ = child.exchange({}, b"", time.monotonic() + self.limits.startup_seconds, 0)
        except (TimeoutError, _ChildGone) as exc:
            self._replace_silently(child)
            raise _ChildGone(f"the parser process did not start ({exc or 'timeout'})") from exc
        if not ready.get("ready"):
            self._replace_silently(child)
            raise _ChildGone(f"the parser process did not start ({ready})")
        return child

    def _replace_silently(self, child: _Child) -> None:
        with self._lock:
            self._children.discard(child)
        child.kill()


def _document(reply: dict[str, object], body: bytes) -> ParsedDocument:
    metadata = reply.get("metadata")
    return ParsedDocument(
        title=str(reply["title"]),
        text=body.decode("utf-8", "surrogatepass"),
        source=str(reply["source"]),
        content_type=str(reply["content_type"]),
        metadata={str(k): str(v) for k, v in metadata.items()}
        if isinstance(metadata, dict)
        else {},
    )


def _signal_name(status: int | None) -> str | None:
    if status is None or status >= 0:
        return None
    try:
        return f"signal {signal.Signals(-status).name}"
    except ValueError:
        return f"signal {-status}"


def _seconds(value: float) -> str:
    return f"{math.ceil(value) if value >= 1 else value:g} s"
