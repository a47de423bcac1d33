"""Serving an ASGI app the same way in every Tandem process."""

from __future__ import annotations

import asyncio

import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# Longer than our clients keep idle connections (ModelClient: 2 s, the web server's proxy:
# 5 s), so the client side always closes first and no request races a server-side close.
KEEP_ALIVE_SECONDS = 30
# The API and web servers face browsers and any local process. A request's line and
# headers may not grow past 32 KiB unfinished (400; a block that arrives whole in one
# socket read, at most 256 KiB, is parsed; browsers send a few KiB, cookies included),
# and must be complete within 10 s of the connection opening or going idle (uvicorn
# itself would wait for ever, one open connection per client that trickles its headers).
MAX_HEADER_BYTES = 32 * 1024
HEADER_SECONDS = 10.0
HEADERS_TOO_LARGE = "Request headers too large."


class BoundedHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol with bounds on a request's head: one whose line and
    headers are still unfinished past MAX_HEADER_BYTES gets 400 and the connection
    closes; a connection whose client has not finished a request's head in time is
    closed: HEADER_SECONDS after it opens, or after the keep-alive time plus
    HEADER_SECONDS once a response is complete. A request being served is never cut; a
    stalled body is the API's own timeout (api.body_limits).

    httptools (llhttp) parses in C with no bound of its own on a head's size. uvicorn's
    other parser, h11, has one, but it parses and writes in Python: 14% of the API
    server's Python time per search (py-spy, 4 clients)."""

    _deadline: asyncio.TimerHandle | None = None
    _in_head = False  # between a request's first byte and the end of its headers
    _head_bytes = 0  # received while the head was unfinished

    def _arm(self, seconds: float) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = self.loop.call_later(seconds, self._overdue)

    def _overdue(self) -> None:
        serving = self.cycle is not None and not self.cycle.response_complete
        if not serving and not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(HEADER_SECONDS)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        # Counted after parsing: a whole head in one read passes, whatever its size;
        # the bytes of a read that leaves a head unfinished count towards the bound.
        if self._in_head and not self.transport.is_closing():
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEADER_BYTES:
                self.send_400_response(HEADERS_TOO_LARGE)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head, self._head_bytes = True, 0

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm(self.timeout_keep_alive + HEADER_SECONDS)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        super().connection_lost(exc)


def serve(
    app: ASGIApp, *, host: str, port: int, drain_seconds: float, client_facing: bool = False
) -> None:
    """Run until SIGTERM/SIGINT, then stop accepting and let in-flight requests finish.

    `client_facing` (the API and web servers) parses under the head's size and time
    limits above. The model servers (Tandem's own processes call them; they hold no data)
    run uvicorn's default."""
    uvicorn.run(
        app,
        host=host,
        port=port,
        http=BoundedHttpTools if client_facing else "auto",
        log_config=None,  # our JSON-lines logging, configured by the command
        access_log=False,  # Prometheus counts requests; access lines cost latency
        timeout_graceful_shutdown=int(drain_seconds) or None,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        lifespan="on",
    )
