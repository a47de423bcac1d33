"""The sandbox's child process: parses one document per request, under resource limits.

Run as ``python -m tandem.worker.sandbox_child CONFIG`` by worker/sandbox.py, it speaks
length-prefixed frames on its stdin and stdout: a frame is an 8-byte header (the lengths of
a JSON object and of a raw body), the JSON object, the body. A request's body is the
upload's bytes; a reply's body is the document's text, UTF-8. No pickle: the parent never
unpickles what a process that read hostile bytes wrote.

Limits: RLIMIT_AS bounds the address space (the interpreter's own plus the parse's
allowance), so a runaway allocation fails with MemoryError; RLIMIT_CPU is moved before each
parse to that parse's CPU allowance, past which the kernel ends the process (SIGXCPU). The
child dies with its parent: PR_SET_PDEATHSIG (Linux) while it parses, the pipe's EOF while
it waits.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import resource
import signal
import struct
import sys
import time
from types import TracebackType
from typing import BinaryIO

from tandem.documents.parsed import ParseError
from tandem.worker.limits import ParseLimits

FRAME_HEADER = struct.Struct(">II")
_PR_SET_PDEATHSIG = 1


def write_frame(out: BinaryIO, header: dict[str, object], body: bytes = b"") -> None:
    encoded = json.dumps(header).encode()
    out.write(FRAME_HEADER.pack(len(encoded), len(body)) + encoded)
    out.write(body)
    out.flush()


def read_frame(source: BinaryIO) -> tuple[dict[str, object], bytes] | None:
    """The next frame, or None at the end of the input (the parent is gone)."""
    prefix = _read_exactly(source, FRAME_HEADER.size)
    if prefix is None:
        return None
    header_length, body_length = FRAME_HEADER.unpack(prefix)
    header = _read_exactly(source, header_length)
    body = _read_exactly(source, body_length)
    if header is None or body is None:
        return None
    decoded = json.loads(header)
    return (decoded, body) if isinstance(decoded, dict) else None


def _read_exactly(source: BinaryIO, size: int) -> bytes | None:
    chunks: list[bytes] = []
    while size:
        chunk = source.read(size)
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def memory_bytes(field: str = "VmHWM", pid: int | str = "self") -> int | None:
    """A memory figure of /proc/PID/status: VmHWM (peak resident), VmRSS (resident now),
    VmSize (address space); None where /proc does not say."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _reset_peak_rss() -> None:
    # The previous parse's freed heap goes back to the system first (glibc keeps it
    # otherwise): an idle child stays small, and the peak below is this parse's.
    if sys.platform == "linux":
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None).malloc_trim(0)
    # Writing 5 to clear_refs resets VmHWM, so each parse reports its own peak.
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear_refs:
            clear_refs.write("5")
    except OSError:
        pass


def _die_with_parent(parent: int) -> None:
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(0)


def _cpu_used() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def serve(config: dict[str, float | int], requests: BinaryIO, replies: BinaryIO) -> None:
    """Answer parse requests until the input ends."""
    # Imported here, after the parent-death signal is armed: the parsing libraries take
    # most of a second to load.
    from tandem.worker.parsing import parse_document

    limits = ParseLimits(max_extracted_chars=int(config["max_extracted_chars"]))
    cpu_seconds = float(config["cpu_seconds"])
    # A crash dump of a process of a gigabyte would cost more than the parse.
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    allowance = (memory_bytes("VmSize") or 0) + int(config["memory_bytes"])
    if hard == resource.RLIM_INFINITY or allowance < hard:
        resource.setrlimit(resource.RLIMIT_AS, (allowance, hard))
    _report_crashes(replies)
    write_frame(replies, {"ready": True, "pid": os.getpid()})
    while (request := read_frame(requests)) is not None:
        header, data = request
        _, cpu_hard = resource.getrlimit(resource.RLIMIT_CPU)
        soft = int(_cpu_used() + cpu_seconds) + 1
        if cpu_hard == resource.RLIM_INFINITY or soft < cpu_hard:
            resource.setrlimit(resource.RLIMIT_CPU, (soft, cpu_hard))
        _reset_peak_rss()
        at_start = memory_bytes("VmRSS")
        started = time.perf_counter()
        filename = str(header["filename"])
        content_type = header.get("content_type")
        reply: dict[str, object]
        body = b""
        try:
            document = parse_document(
                filename, data, content_type if isinstance(content_type, str) else None, limits
            )
        except ParseError as exc:
            reply = {"error": type(exc).__name__, "filename": exc.filename, "detail": exc.detail}
        except MemoryError:
            # The heap may be left fragmented or half-built: report, and let a fresh
            # process take the next file.
            del data
            write_frame(replies, {"error": "memory", **_stats(started, at_start)})
            os._exit(3)
        else:
            reply = {
                "title": document.title,
                "path": document.path,
                "content_type": document.content_type,
                "metadata": document.metadata,
            }
            body = document.text.encode("utf-8", "surrogatepass")
        write_frame(replies, {**reply, **_stats(started, at_start)}, body)


def _stats(started: float, rss_at_start: int | None) -> dict[str, object]:
    return {
        "seconds": time.perf_counter() - started,
        "peak_rss": memory_bytes("VmHWM"),
        "rss_at_start": rss_at_start,
    }


def _report_crashes(replies: BinaryIO) -> None:
    """An exception no extractor expected ends the process: its type and message go to the
    parent as a last frame (the traceback to stderr, the worker's log) before it does."""
    default = sys.excepthook

    def hook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        with contextlib.suppress(OSError):  # the parent is gone: nobody to tell
            write_frame(replies, {"crash": f"{kind.__name__}: {exc}"[:500]})
        default(kind, exc, tb)

    sys.excepthook = hook


def main() -> None:
    config = json.loads(sys.argv[1])
    _die_with_parent(int(config["parent"]))
    # Frames travel on copies of stdin and stdout; the standard streams themselves are
    # pointed away, so a library that prints cannot corrupt a frame.
    requests = os.fdopen(os.dup(0), "rb")
    replies = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(2, 1)
    serve(config, requests, replies)


if __name__ == "__main__":
    main()
