"""The API key check, as pure ASGI middleware: it runs before the route is chosen and
before a byte of the body is read, so a request without a valid key costs no parsing, no
memory for its body and no temporary file for its upload.

The `Caller` it accepts goes into the request's state (``scope["state"]["caller"]``);
route dependencies read it from there (`state.current_caller`) instead of looking the key
up again.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from tandem.api.auth import OPEN_ACCESS, Authenticator
from tandem.db.principals import Caller
from tandem.wire.errors import HttpMiddleware, error_response

CALLER_STATE = "caller"
# Probes and the API's own documentation carry no key; everything else under /api/ does.
OPEN_PATHS = frozenset({"/api/health", "/api/ready"})
CHALLENGE = {"WWW-Authenticate": "Bearer"}
MISSING_KEY = (
    "an API key is required: send `Authorization: Bearer <key>` "
    "(create one with `tandem api-key create`)"
)
BAD_KEY = "the API key is not valid or was revoked"


def needs_key(path: str) -> bool:
    return path.startswith("/api/") and path not in OPEN_PATHS


def bearer_token(scope: Scope) -> str:
    """The credentials of an `Authorization: Bearer ...` header (scheme case-insensitive,
    RFC 7235), "" when there is none."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").strip().partition(" ")
            return token.strip() if scheme.lower() == "bearer" else ""
    return ""


def client_address(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


class ApiKeyMiddleware(HttpMiddleware):
    """Open access: every request runs as `OPEN_ACCESS`. Otherwise a key is required on
    every /api/ path but the probes: 401 without one or with a bad one, 429 (Retry-After)
    once a client address has failed too often."""

    def __init__(
        self, app: ASGIApp, *, open_access: bool, authenticator: Callable[[], Authenticator]
    ) -> None:
        super().__init__(app)
        self.open_access = open_access
        # Resolved per request: the authenticator belongs to the lifespan's state.
        self.authenticator = authenticator

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.open_access:
            await self._pass(OPEN_ACCESS, scope, receive, send)
            return
        if not needs_key(scope["path"]):
            # The probes and the docs run as nobody: a route there that asked for a
            # caller would be refused (fail closed), never handed open access.
            await self.app(scope, receive, send)
            return
        key = bearer_token(scope)
        if not key:
            await error_response(401, MISSING_KEY, "unauthorized", CHALLENGE)(scope, receive, send)
            return
        verdict = await self.authenticator().authenticate(key, client_address(scope))
        if isinstance(verdict, Caller):
            await self._pass(verdict, scope, receive, send)
            return
        if verdict.status == 429:
            wait = verdict.retry_after
            message = f"too many refused API keys from this address; retry in {wait} s"
            headers = {"Retry-After": str(wait)}
            await error_response(429, message, "too_many_failures", headers)(scope, receive, send)
            return
        await error_response(401, BAD_KEY, "unauthorized", CHALLENGE)(scope, receive, send)

    async def _pass(self, caller: Caller, scope: Scope, receive: Receive, send: Send) -> None:
        scope.setdefault("state", {})[CALLER_STATE] = caller
        await self.app(scope, receive, send)
