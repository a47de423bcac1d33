"""The model servers' optional bearer key (`TANDEM_MODEL_SERVER_API_KEY`, as TEI's
`--api-key`): checked in ASGI middleware, before a body is read or a route runs, so an
unauthenticated caller costs no parsing, tokenizing or queue space."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from tandem.wire.errors import ERROR_DESCRIPTIONS, ErrorResponse, HttpMiddleware, error_response

SCHEME_NAME = "ModelServerKey"
CHALLENGE = {"WWW-Authenticate": "Bearer"}


def _digest(secret: bytes) -> bytes:
    # Comparing digests keeps the comparison's time independent of the key's length too.
    return hashlib.sha256(secret).digest()


def bearer_token(scope: Scope) -> bytes | None:
    """The token of the request's first `Authorization: Bearer <token>` header."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.strip().partition(b" ")
            return token.strip() if scheme.lower() == b"bearer" else None
    return None


class BearerKey(HttpMiddleware):
    """401 in the error envelope for any path outside `open_paths` without the key."""

    def __init__(self, app: ASGIApp, key: str, open_paths: Iterable[str]) -> None:
        super().__init__(app)
        self._expected = _digest(key.encode("ascii"))
        self._open = frozenset(open_paths)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] in self._open:
            await self.app(scope, receive, send)
            return
        token = bearer_token(scope)
        if token is not None and hmac.compare_digest(_digest(token), self._expected):
            await self.app(scope, receive, send)
            return
        message = (
            "this model server needs `Authorization: Bearer <key>` "
            "(the TANDEM_MODEL_SERVER_API_KEY it was started with)"
            if token is None
            else "the model server key sent is not valid"
        )
        await error_response(401, message, "unauthorized", CHALLENGE)(scope, receive, send)


def document_key(
    build: Callable[[], dict[str, Any]], open_paths: Iterable[str]
) -> Callable[[], dict[str, Any]]:
    """Wrap an app's OpenAPI builder: every operation outside `open_paths` says it needs
    the key and may answer 401, so clients and the fuzzer know to send one."""
    opened = frozenset(open_paths)
    cached: dict[str, Any] = {}

    def openapi() -> dict[str, Any]:
        if cached:
            return cached
        schema = build()
        components = schema.setdefault("components", {})
        components.setdefault("schemas", {}).setdefault(
            "ErrorResponse",
            ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}"),
        )
        components.setdefault("securitySchemes", {})[SCHEME_NAME] = {
            "type": "http",
            "scheme": "bearer",
            "description": "The model server's TANDEM_MODEL_SERVER_API_KEY",
        }
        for path, item in schema.get("paths", {}).items():
            if path in opened:
                continue
            for operation in item.values():
                operation["security"] = [{SCHEME_NAME: []}]
                operation.setdefault("responses", {})["401"] = {
                    "description": ERROR_DESCRIPTIONS[401],
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/ErrorResponse"}
                        }
                    },
                }
        cached.update(schema)
        return cached

    return openapi
