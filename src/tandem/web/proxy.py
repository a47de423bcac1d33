"""Forward ``/api/*`` to the API server, for local runs without nginx in front.

Both directions stream: an upload is passed on as its bytes arrive (never held whole in
this process) and a response as the API sends it. Method, path, query, headers
(Authorization included), body and status pass through unchanged; only hop-by-hop headers
are dropped, as any proxy must.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import httpx
from starlette.background import BackgroundTask
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse

log = logging.getLogger(__name__)

# RFC 9110 §7.6.1: meaningful for one connection only. `host` is the upstream's own.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
    }
)
PROXIED_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def error_json(status: int, message: str, error_type: str) -> JSONResponse:
    """The API's error envelope, so the UI shows proxy failures like any other error."""
    return JSONResponse({"error": {"message": message, "type": error_type}}, status_code=status)


def _request_headers(request: Request) -> list[tuple[bytes, bytes]]:
    kept = [
        (name, value)
        for name, value in request.headers.raw
        if name.decode("latin-1").lower() not in HOP_BY_HOP
        and name.lower() not in (b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host")
    ]
    client = request.client.host if request.client else ""
    earlier = request.headers.get("x-forwarded-for")
    forwarded_for = f"{earlier}, {client}" if earlier else client
    # The Host the browser addressed, as the first proxy saw it (nginx's, when one is in
    # front): the API compares a request's Origin with it (tandem.http.guards).
    forwarded_host = request.headers.get("x-forwarded-host") or request.headers.get("host", "")
    kept += [
        (b"x-forwarded-for", forwarded_for.encode("latin-1")),
        (b"x-forwarded-proto", request.url.scheme.encode("latin-1")),
        (b"x-forwarded-host", forwarded_host.encode("latin-1")),
    ]
    return kept


def _has_body(request: Request) -> bool:
    headers = request.headers
    return "transfer-encoding" in headers or headers.get("content-length", "0") != "0"


class ApiProxy:
    """One pooled HTTP client to the API server, shared by all requests of this process."""

    def __init__(self, upstream: str, timeout: float, connect_timeout: float) -> None:
        self.upstream = upstream.rstrip("/")
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            follow_redirects=False,
            # Many browser tabs polling index attempts at once should not queue here.
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    def _target(self, request: Request) -> httpx.URL:
        # The raw path keeps percent-encoding intact: a document id may hold "/" or "?".
        raw_path: bytes = request.scope.get("raw_path") or request.url.path.encode()
        query: bytes = request.scope.get("query_string", b"")
        target = self.upstream + raw_path.decode("latin-1")
        if query:
            target += "?" + query.decode("latin-1")
        return httpx.URL(target)

    async def forward(self, request: Request) -> Response:
        outgoing = self._client.build_request(
            request.method,
            self._target(request),
            headers=_request_headers(request),
            # With the client's Content-Length kept, httpx streams it as-is (not chunked),
            # so the API can refuse an oversized upload before reading it.
            content=request.stream() if _has_body(request) else None,
        )
        try:
            upstream = await self._client.send(outgoing, stream=True)
        except httpx.TimeoutException:
            log.warning("api_proxy_timeout path=%s", request.url.path)
            return error_json(504, "the API server did not answer in time", "gateway_timeout")
        except httpx.TransportError as exc:
            log.warning("api_proxy_unreachable upstream=%s error=%r", self.upstream, exc)
            return error_json(
                502,
                f"the API server at {self.upstream} cannot be reached; is it running?",
                "bad_gateway",
            )
        except ClientDisconnect:
            log.info("api_proxy_client_gone path=%s", request.url.path)
            return Response(status_code=400)
        response = StreamingResponse(
            _relay(upstream),
            status_code=upstream.status_code,
            background=BackgroundTask(upstream.aclose),
        )
        # Raw pairs, not a dict: repeated headers (Set-Cookie, Vary) must survive.
        response.raw_headers = [
            (name.lower(), value)
            for name, value in upstream.headers.raw
            if name.decode("latin-1").lower() not in HOP_BY_HOP
        ]
        return response


async def _relay(upstream: httpx.Response) -> AsyncIterator[bytes]:
    """The body exactly as received (still compressed if it was), so Content-Length holds."""
    try:
        async for chunk in upstream.aiter_raw():
            yield chunk
    except httpx.TransportError as exc:
        # Headers are already sent: all we can do is cut the response short, visibly.
        log.warning("api_proxy_response_cut error=%r", exc)
        raise
