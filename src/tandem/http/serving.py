"""Serving an ASGI app the same way in every Tandem process."""

from __future__ import annotations

import asyncio

import h11
import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.h11_impl import H11Protocol

# Longer than our clients keep idle connections (ModelClient: 2 s, the web server's proxy:
# 5 s), so the client side always closes first and no request races a server-side close.
KEEP_ALIVE_SECONDS = 30
# The API and web servers face browsers and any local process. A request's headers may
# not grow past 32 KiB unfinished (h11 answers 400; a block that arrives whole in one
# socket read, at most 256 KiB, is parsed; browsers send a few KiB, cookies included),
# and must be complete within 10 s of the connection opening or going idle (uvicorn
# itself would wait for ever, one open connection per client that trickles its headers).
MAX_HEADER_BYTES = 32 * 1024
HEADER_SECONDS = 10.0


class HeaderDeadlineH11(H11Protocol):
    """uvicorn's h11 protocol, closing a connection whose client has not finished a
    request's headers in time: HEADER_SECONDS after it opens, or after the keep-alive
    time plus HEADER_SECONDS once a response is complete. A request being served is never
    cut; a stalled body is the API's own timeout (api.body_limits)."""

    _deadline: asyncio.TimerHandle | None = None

    def _arm(self, seconds: float) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = self.loop.call_later(seconds, self._overdue)

    def _overdue(self) -> None:
        serving = self.cycle is not None and not self.cycle.response_complete
        waiting_on_client = self.conn.their_state in (h11.IDLE, h11.SEND_BODY)
        if not serving and waiting_on_client and not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(HEADER_SECONDS)

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

    `client_facing` (the API and web servers) parses with h11 under the header size and
    time limits above: httptools, uvicorn's default, has no limit on a header's size. The
    model servers (Tandem's own processes call them; they hold no data) keep the faster
    default."""
    uvicorn.run(
        app,
        host=host,
        port=port,
        http=HeaderDeadlineH11 if client_facing else "auto",
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
        log_config=None,  # our JSON-lines logging, configured by the command
        access_log=False,  # Prometheus counts requests; access lines cost latency
        timeout_graceful_shutdown=int(drain_seconds) or None,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        lifespan="on",
    )
