"""Request body limits per route, enforced before and while the body is read.

A declared Content-Length over the route's limit is refused with 413 before a byte is
read. Otherwise the body streams to the route as it arrives (never buffered here), counted:
the chunk that crosses the limit, or a client that stops sending for `idle_seconds`, ends
the read, and the route's own answer to its failed read (FastAPI's 400) is replaced by
413, or 408.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tandem.config import ApiSettings
from tandem.wire.errors import HttpMiddleware, error_response

# Multipart framing per file (boundary, Content-Disposition, Content-Type lines): an upload
# of the most files the API takes, each of the largest size, still fits.
PART_OVERHEAD_BYTES = 4096
# A body that stops arriving for this long is abandoned (uvicorn has no such timeout).
IDLE_SECONDS = 60.0

LimitFor = Callable[[str, str], int]  # (method, path) -> the most body bytes accepted


def api_limits(settings: ApiSettings) -> LimitFor:
    """Uploads: TANDEM_MAX_UPLOAD_BYTES, or less when that many files of the largest size
    would need less; batch ingest its own limit; every other request the JSON limit."""
    per_files = settings.max_files_per_upload * (settings.max_file_bytes + PART_OVERHEAD_BYTES)
    upload = min(settings.max_upload_bytes, per_files)

    def limit_for(method: str, path: str) -> int:
        if method == "POST" and path == "/api/documents":
            return upload
        if method == "POST" and path == "/api/documents/batch":
            return settings.max_batch_request_bytes
        return settings.max_json_bytes

    return limit_for


class _BodyRefused(Exception):
    """Raised into the route's body read; the route's answer to it is replaced by ours."""


class _Reading:
    """One request's body, counted; after a refusal, what the route sends is dropped."""

    def __init__(self, limit: int, idle_seconds: float, receive: Receive, send: Send) -> None:
        self.limit = limit
        self.idle_seconds = idle_seconds
        self._receive = receive
        self._send = send
        self.size = 0
        self.started = False
        self.refusal: tuple[int, str, str] | None = None

    async def receive(self) -> Message:
        if self.refusal is not None:
            return {"type": "http.disconnect"}
        try:
            with anyio.fail_after(self.idle_seconds):
                message = await self._receive()
        except TimeoutError:
            self.refusal = (
                408,
                f"the request body stopped arriving for {self.idle_seconds:.0f} s",
                "request_timeout",
            )
            raise _BodyRefused from None
        if message["type"] == "http.request":
            self.size += len(message.get("body", b""))
            if self.size > self.limit:
                self.refusal = too_large(self.limit)
                raise _BodyRefused
        return message

    async def send(self, message: Message) -> None:
        if self.refusal is not None and not self.started:
            return  # the route's answer to a read we cut short
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)


def too_large(limit: int) -> tuple[int, str, str]:
    return 413, f"request body exceeds {limit} bytes", "payload_too_large"


class RouteBodyLimits(HttpMiddleware):
    def __init__(self, app: ASGIApp, limit_for: LimitFor, idle_seconds: float = IDLE_SECONDS):
        super().__init__(app)
        self.limit_for = limit_for
        self.idle_seconds = idle_seconds

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.limit_for(scope["method"], scope["path"])
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            await self._answer(too_large(limit), scope, receive, send)
            return
        reading = _Reading(limit, self.idle_seconds, receive, send)
        with contextlib.suppress(_BodyRefused):  # the route let it through: answered below
            await self.app(scope, reading.receive, reading.send)
        if reading.refusal is not None and not reading.started:
            await self._answer(reading.refusal, scope, receive, send)

    async def _answer(
        self, refusal: tuple[int, str, str], scope: Scope, receive: Receive, send: Send
    ) -> None:
        status, message, error_type = refusal
        # A stalled client loses its connection. Over a limit, the connection stays: the
        # server drops the rest of the body unread, and the client surely gets the answer
        # (closing with unread bytes pending would reset it, answer and all).
        headers = {"Connection": "close"} if status == 408 else None
        await error_response(status, message, error_type, headers)(scope, receive, send)
