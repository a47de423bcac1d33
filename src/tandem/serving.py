"""Serving an ASGI app the same way in every Tandem process."""

from __future__ import annotations

import uvicorn
from starlette.types import ASGIApp

# Longer than our clients keep idle connections (ModelClient: 2 s), so the client side
# always closes first and no request races a server-side close.
KEEP_ALIVE_SECONDS = 30


def serve(app: ASGIApp, *, host: str, port: int, drain_seconds: float) -> None:
    """Run until SIGTERM/SIGINT, then stop accepting and let in-flight requests finish."""
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_config=None,  # our JSON-lines logging, configured by the command
        access_log=False,  # Prometheus counts requests; access lines cost latency
        timeout_graceful_shutdown=int(drain_seconds) or None,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        lifespan="on",
    )
