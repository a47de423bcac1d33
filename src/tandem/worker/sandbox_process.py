"""The parent's side of one sandbox child: the process, started with a clean environment,
and the two pipes it speaks frames on (worker/sandbox_child.py), waited on with select so
that a read or write never blocks past its deadline."""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import subprocess
import sys
import time
from pathlib import Path

import tandem
from tandem.documents.parsed import ParsedDocument
from tandem.worker.sandbox_child import FRAME_HEADER

# What the child may see of the worker's environment: no database or broker credentials.
_CHILD_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "HOME")
_MAX_HEADER_BYTES = 16 * 1024 * 1024


class ChildGone(Exception):
    """The child's pipe closed: it exited or was killed."""


class ChildProcess:
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
        TimeoutError past it, ChildGone if the child's pipe closes."""
        if header:
            encoded = json.dumps(header).encode()
            self._send(FRAME_HEADER.pack(len(encoded), len(body)) + encoded + body, deadline)
        header_length, body_length = FRAME_HEADER.unpack(self._receive(FRAME_HEADER.size, deadline))
        if header_length > _MAX_HEADER_BYTES or body_length > max_body:
            raise ChildGone(f"the parser sent a reply of {header_length + body_length} bytes")
        reply = json.loads(self._receive(header_length, deadline))
        if not isinstance(reply, dict):
            raise ChildGone("the parser sent a malformed reply")
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
                    raise ChildGone("the parser's input closed") from exc

    def _receive(self, size: int, deadline: float) -> bytes:
        chunks: list[bytes] = []
        with selectors.DefaultSelector() as selector:
            selector.register(self._in, selectors.EVENT_READ)
            while size:
                if not selector.select(_left(deadline)):
                    raise TimeoutError
                chunk = os.read(self._in, min(size, 1 << 20))
                if not chunk:
                    raise ChildGone("the parser's output closed")
                chunks.append(chunk)
                size -= len(chunk)
        return b"".join(chunks)

    def exit_status(self, wait: float = 0.0) -> int | None:
        """Its exit status (negative: the signal), once it has ended within `wait` seconds."""
        try:
            return self.process.wait(timeout=wait) if wait else self.process.poll()
        except subprocess.TimeoutExpired:
            return None

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


def int_field(reply: dict[str, object], key: str) -> int | None:
    value = reply.get(key)
    return value if isinstance(value, int) else None


def document_from_reply(reply: dict[str, object], body: bytes) -> ParsedDocument:
    """The ParsedDocument a child's reply describes (its text is the body)."""
    metadata = reply.get("metadata")
    return ParsedDocument(
        title=str(reply["title"]),
        text=body.decode("utf-8", "surrogatepass"),
        path=str(reply["path"]),
        content_type=str(reply["content_type"]),
        metadata={str(k): str(v) for k, v in metadata.items()}
        if isinstance(metadata, dict)
        else {},
    )
