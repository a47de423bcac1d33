"""The web server: the browser UI's static assets, a health check, and (for local runs
without nginx) ``/api/*`` forwarded to the API server.

The UI is plain HTML, CSS and ES modules under ``static/``: no build step, nothing fetched
from elsewhere, and no secret in any page (the API key lives in the browser session).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tandem.config import WebSettings
from tandem.http.guards import HostAllowlist, RequestGuards
from tandem.web.proxy import PROXIED_METHODS, ApiProxy, error_json

log = logging.getLogger(__name__)
STATIC_DIR = Path(__file__).parent / "static"

# Scripts, styles and requests from this origin only: a snippet that slipped past the
# client-side sanitizer could still not run code or send data elsewhere.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
PAGE_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    # Unversioned file names: revalidate every load (a cheap 304 thanks to the ETag).
    (b"cache-control", b"no-cache"),
]


class PageHeaders:
    """Adds the security and caching headers to every static response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + PAGE_HEADERS
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def healthz(_: Request) -> Response:
    return JSONResponse({"status": "ok", "service": "web"})


async def api_not_configured(_: Request) -> Response:
    return error_json(
        502,
        "this web server does not forward /api/: route it to the API server "
        "(nginx in a deployment) or set API_SERVER_URL",
        "api_not_configured",
    )


def create_app(settings: WebSettings) -> Starlette:
    proxy = (
        ApiProxy(
            settings.api_server_url,
            timeout=settings.proxy_timeout_seconds,
            connect_timeout=settings.proxy_connect_timeout_seconds,
        )
        if settings.api_server_url
        else None
    )

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        log.info("web_ready api_server=%s", settings.api_server_url or "not proxied")
        try:
            yield
        finally:
            if proxy is not None:
                await proxy.aclose()

    api_endpoint = proxy.forward if proxy is not None else api_not_configured
    return Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET", "HEAD"]),
            Route("/api/{path:path}", api_endpoint, methods=PROXIED_METHODS),
            Mount("/", app=PageHeaders(StaticFiles(directory=STATIC_DIR, html=True))),
        ],
        lifespan=lifespan,
        # Foreign Host names (DNS rebinding) and other sites' writes through the /api proxy
        # are refused here, before anything is forwarded.
        middleware=[
            Middleware(RequestGuards, allowed_hosts=HostAllowlist.parse(settings.allowed_hosts))
        ],
    )
