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
over, and the child's code is exactly `tandem.worker.sandbox_child`. Measured on the
two-core machine: a child starts in 0.6-0.8 s (the parsing libraries' imports; up to 2 s
when the machine is busy), against 10 ms for a fork from a multiprocessing forkserver
that preloaded them; but a replacement is started in the background, off the caller's
path, and a file that cost a child its life already took the timeout or its memory. A
small parse costs 0.4-0.8 ms through a child, 0.04 ms in process
(benchmarks/hostile_files.py).

Children are started by one long-lived thread of the pool, because the parent-death
signal follows the thread that started a child: a caller's thread may end, the pool's
thread ends only when the pool is closed. A caller waits for a free child first (with
parse_workers children, the others' parses); each parse then ends within the timeout.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import signal
import threading
import time
from dataclasses import dataclass

from tandem.documents.parsed import (
    CorruptFile,
    EmptyDocument,
    ParsedDocument,
    ParseError,
    UnsupportedFileType,
)
from tandem.worker.limits import ParseLimits
from tandem.worker.sandbox_child import memory_bytes
from tandem.worker.sandbox_process import ChildGone, ChildProcess, document_from_reply, int_field

log = logging.getLogger(__name__)

GIB = 1024**3
_ERRORS: dict[str, type[ParseError]] = {
    cls.__name__: cls for cls in (ParseError, UnsupportedFileType, CorruptFile, EmptyDocument)
}


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
    rss_at_start_bytes: int | None = None  # its resident memory when the parse began
    # Killed by a signal nobody here sent (SIGKILL): an OOM kill, or a child killed from
    # outside just before the file reached it; worth one more try on a fresh child.
    killed: bool = False


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
        self._idle: queue.Queue[ChildProcess] = queue.Queue()
        self._wanted: queue.Queue[bool] = queue.Queue()
        self._children: set[ChildProcess] = set()
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
        # The children first: a starter thread waiting for a child to come up is freed.
        with self._lock:
            children, self._children = set(self._children), set()
        for child in children:
            child.stop()
        self._starter.join(timeout=self.limits.startup_seconds)

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
        """Parse in a child; the outcome says what it cost. Waits for a free child. A child
        SIGKILLed under the file is tried once more: a file it happens to reach as the child
        is killed from outside is not failed for it, and a real OOM kill fails again."""
        outcome = self._run_once(filename, data, content_type)
        if outcome.killed:
            outcome = self._run_once(filename, data, content_type)
        return outcome

    def _run_once(self, filename: str, data: bytes, content_type: str | None) -> ParseOutcome:
        child = self._take()
        started = time.monotonic()
        deadline = started + self.limits.timeout_seconds
        max_body = 4 * self.parse_limits.max_extracted_chars + 1024
        request: dict[str, object] = {"filename": filename, "content_type": content_type}
        try:
            reply, body = child.exchange(request, data, deadline, max_body)
        except TimeoutError:
            at_kill = memory_bytes("VmHWM", child.pid)
            self._replace(child)
            limit = _seconds(self.limits.timeout_seconds)
            log.warning("parse_timeout file=%r limit=%s", filename, limit)
            timeout = ParseTimeout(filename, f"parsing took longer than {limit}")
            return ParseOutcome(None, timeout, time.monotonic() - started, at_kill)
        except ChildGone as gone:
            return self._died(child, filename, started, str(gone))
        if "crash" in reply:
            return self._died(child, filename, started, str(reply["crash"]))
        seconds = time.monotonic() - started
        peak, at_start = (int_field(reply, key) for key in ("peak_rss", "rss_at_start"))
        if reply.get("error") == "memory":
            self._replace(child)
            memory = f"parsing needed more than {self._memory()} of memory"
            return ParseOutcome(
                None, ParseMemoryExceeded(filename, memory), seconds, peak, at_start
            )
        self._idle.put(child)
        if "error" in reply:
            kind = _ERRORS.get(str(reply["error"]), ParseError)
            failure = kind(str(reply.get("filename", filename)), str(reply.get("detail", "")))
            return ParseOutcome(None, failure, seconds, peak, at_start)
        return ParseOutcome(document_from_reply(reply, body), None, seconds, peak, at_start)

    def _died(self, child: ChildProcess, filename: str, started: float, why: str) -> ParseOutcome:
        peak = memory_bytes("VmHWM", child.pid)
        # How it ended, unless it has not (a reply we refused): then we end it, and the
        # signal we send says nothing of the file.
        own_end = child.exit_status(wait=1.0)
        status = self._replace(child)
        elapsed = time.monotonic() - started
        error: ParseError
        if own_end is None:
            error = ParserCrashed(filename, f"the parser failed ({why})")
        elif status == -signal.SIGXCPU:
            limit = _seconds(self._cpu_seconds)
            error = ParseCpuExceeded(filename, f"parsing used more than {limit} of CPU time")
        elif status == -signal.SIGKILL:  # no one here sent it: the kernel's OOM killer?
            error = ParseMemoryExceeded(filename, "parsing was killed, out of memory")
            log.warning("parse_killed file=%r reason=%s", filename, why)
            return ParseOutcome(None, error, elapsed, peak, killed=True)
        else:
            what = _signal_name(status) or why or f"exit status {status}"
            error = ParserCrashed(filename, f"the parser failed ({what})")
        log.warning("parse_crashed file=%r status=%s reason=%s", filename, status, why)
        return ParseOutcome(None, error, elapsed, peak)

    def _memory(self) -> str:
        size = self.limits.memory_bytes
        return f"{size / GIB:g} GiB" if size >= GIB else f"{size // 1024**2} MiB"

    def _take(self) -> ChildProcess:
        while True:
            if self._closed.is_set():
                raise SandboxUnavailable("the parser pool is closed")
            try:
                child = self._idle.get(timeout=0.5)
            except queue.Empty:
                failure = self._failure
                if failure is not None and not self._children:
                    raise SandboxUnavailable(
                        f"no parser process could be started: {failure}"
                    ) from None
                continue
            if child.exit_status() is None:
                return child
            # It died idle (killed from outside): no file to blame; take the next one.
            log.warning("parse_child_died_idle pid=%d status=%s", child.pid, child.exit_status())
            self._replace(child)

    def _replace(self, child: ChildProcess) -> int | None:
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
                except (OSError, TimeoutError, ChildGone) as exc:
                    self._failure = str(exc) or type(exc).__name__
                    log.error("parse_sandbox_start_failed error=%s", self._failure)
                    self._closed.wait(delay)
                    delay = min(delay * 2, 30.0)
                    continue
                self._failure, delay = None, 0.5
                self._idle.put(child)
                break

    def _start_child(self) -> ChildProcess:
        config: dict[str, object] = {
            "parent": os.getpid(),
            "memory_bytes": self.limits.memory_bytes,
            "cpu_seconds": self._cpu_seconds,
            "max_extracted_chars": self.parse_limits.max_extracted_chars,
        }
        child = ChildProcess(config)
        with self._lock:
            if self._closed.is_set():
                child.kill()
                raise ChildGone("the pool closed")
            self._children.add(child)
        try:
            ready, _ = child.exchange({}, b"", time.monotonic() + self.limits.startup_seconds, 0)
        except (TimeoutError, ChildGone) as exc:
            self._replace_silently(child)
            raise ChildGone(f"the parser process did not start ({exc or 'timeout'})") from exc
        if not ready.get("ready"):
            self._replace_silently(child)
            raise ChildGone(f"the parser process did not start ({ready})")
        return child

    def _replace_silently(self, child: ChildProcess) -> None:
        with self._lock:
            self._children.discard(child)
        child.kill()


def _signal_name(status: int | None) -> str | None:
    if status is None or status >= 0:
        return None
    try:
        return f"signal {signal.Signals(-status).name}"
    except ValueError:
        return f"signal {-status}"


def _seconds(value: float) -> str:
    return f"{math.ceil(value) if value >= 1 else value:g} s"
