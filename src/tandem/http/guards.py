"""Refusing requests that other web sites make through a visitor's browser.

Both the API server and the web server (with its ``/api`` proxy) run this first:

- **Host.** A DNS-rebinding page (a hostile name that resolves to this machine) is *same
  origin* with the servers, so the browser lets it read their answers; only the Host
  header gives it away. A Host that is not one of the names the server serves gets 400.
- **Origin.** A page on any other origin may send a POST without asking first (a
  "simple" request: a form or multipart body, `fetch(..., {mode: "no-cors"})`); it
  cannot read the answer, but the write happens. Browsers say where such a request comes
  from: state-changing requests whose `Origin` is not the origin they were addressed to,
  or that carry `Sec-Fetch-Site: cross-site`, get 403. Requests without `Origin` (the
  CLI, curl, other servers) are not a browser's cross-site requests and pass.

"The origin it was addressed to" is the Host the browser sent, as the first proxy in front
of us saw it (`X-Forwarded-Host`, set by nginx and by the web server's proxy) or else the
Host header. Trusting that header is safe here: a page on another origin cannot set it
without a CORS preflight, which these servers never grant, and a rebinding page, which
could, is refused by its Host first.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from tandem.wire.errors import HttpMiddleware, error_response

log = logging.getLogger(__name__)
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
DEFAULT_PORTS = {"http": 80, "https": 443}


def split_host(value: str) -> tuple[str, int | None] | None:
    """``name[:port]`` (``[v6]:port`` for IPv6) as (lower-case name, port); None if malformed."""
    value = value.strip().lower()
    if value.startswith("["):
        name, bracket, rest = value[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            return None
        port_text = rest[1:] if rest else ""
    else:
        name, _, port_text = value.partition(":")
        if ":" in port_text:
            return None  # an IPv6 address must be bracketed in a Host header
    if not name:
        return None
    if not port_text:
        return name, None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        return None
    return name, int(port_text)


@dataclass(frozen=True, slots=True)
class HostAllowlist:
    """Host names allowed with any port: exact names, `.domain` suffixes, or `*` (all)."""

    names: frozenset[str]
    suffixes: tuple[str, ...]
    any_host: bool = False

    @classmethod
    def parse(cls, text: str) -> HostAllowlist:
        entries = [entry.strip().lower() for entry in text.split(",") if entry.strip()]
        names = {entry.removeprefix("[").removesuffix("]") for entry in entries}
        suffixes = tuple(sorted(entry for entry in names if entry.startswith(".")))
        return cls(frozenset(names - set(suffixes) - {"*"}), suffixes, "*" in names)

    def allows(self, host_header: str) -> bool:
        parsed = split_host(host_header)
        if parsed is None:
            return False
        name = parsed[0]
        if self.any_host or name in self.names:
            return True
        return any(name.endswith(suffix) or name == suffix[1:] for suffix in self.suffixes)


def _header(scope: Scope, wanted: bytes) -> str | None:
    headers: Iterable[tuple[bytes, bytes]] = scope["headers"]
    for name, value in headers:
        if name == wanted:
            return value.decode("latin-1")
    return None


def addressed_host(scope: Scope) -> str | None:
    """The Host the client sent to the first proxy in front of us, else our own Host."""
    forwarded = _header(scope, b"x-forwarded-host")
    if forwarded:
        return forwarded.split(",")[0].strip()
    return _header(scope, b"host")


def same_origin(origin: str, host_header: str) -> bool:
    """Whether an `Origin` header names the scheme-default-completed ``host[:port]``."""
    parts = urlsplit(origin)
    if parts.scheme not in DEFAULT_PORTS or not parts.netloc:
        return False  # "null" (sandboxed frames, file: pages) and anything odd
    origin_host = split_host(parts.netloc)
    target = split_host(host_header)
    if origin_host is None or target is None:
        return False
    default = DEFAULT_PORTS[parts.scheme]
    return (origin_host[0], origin_host[1] or default) == (target[0], target[1] or default)


def cross_site_refusal(scope: Scope) -> str | None:
    """Why a state-changing request comes from another site, or None if it does not."""
    if scope["method"] not in STATE_CHANGING:
        return None
    if (_header(scope, b"sec-fetch-site") or "").strip().lower() == "cross-site":
        return "the browser marked it cross-site (Sec-Fetch-Site)"
    origin = _header(scope, b"origin")
    if origin is None:
        return None
    target = addressed_host(scope) or ""
    if same_origin(origin.strip(), target):
        return None
    return f"its Origin {origin.strip()!r} is not this site's"


class RequestGuards(HttpMiddleware):
    """Foreign Host: 400; a state-changing request from another site: 403 (module doc)."""

    def __init__(self, app: ASGIApp, allowed_hosts: HostAllowlist) -> None:
        super().__init__(app)
        self.allowed_hosts = allowed_hosts

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        host = _header(scope, b"host")
        if host is None or not self.allowed_hosts.allows(host):
            message = (
                f"this server does not serve the host {host!r}; "
                "set TANDEM_ALLOWED_HOSTS to serve it"
                if host is not None
                else "a Host header is required"
            )
            log.warning("host_refused host=%r path=%s", host, scope["path"])
            await error_response(400, message, "host_not_allowed")(scope, receive, send)
            return
        refusal = cross_site_refusal(scope)
        if refusal is not None:
            message = f"cross-site request refused: {refusal}"
            log.warning(
                "cross_site_refused method=%s path=%s reason=%r",
                scope["method"],
                scope["path"],
                refusal,
            )
            await error_response(403, message, "cross_site_request")(scope, receive, send)
            return
        await self.app(scope, receive, send)
