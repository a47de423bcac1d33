"""One error envelope, ``{"error": {"message", "type"}}``, for every failure a client sees."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)
ModelT = TypeVar("ModelT", bound=BaseModel)


class ErrorDetail(BaseModel):
    message: str
    type: str


class ErrorResponse(BaseModel):
    """The envelope, as the OpenAPI documents describe it."""

    error: ErrorDetail


# What each error status means on these servers, for the OpenAPI documents.
ERROR_DESCRIPTIONS = {
    400: "Bad request: a body that is not JSON, or an empty input",
    401: "An API key is required, or the one sent is not valid",
    403: "The API key's scope does not allow this, or the resource is another user's",
    404: "Not found",
    409: "Conflict: the name is taken",
    413: "Over a limit: request bytes, files or items per request, or input tokens",
    422: "Validation failed; the message names the field",
    429: "Overloaded: the queue is full; retry after `Retry-After` seconds",
    501: "Not configured on this server",
    503: "Not ready, or shutting down; retry after `Retry-After` seconds",
}
_RETRY_AFTER = {
    "Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "string"}}
}


def error_responses(*statuses: int, **described: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for the error statuses a route can answer, all in the error
    envelope; ``described`` overrides a description, keyed ``s404=...``."""
    documented: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        entry: dict[str, Any] = {
            "model": ErrorResponse,
            "description": described.get(f"s{status}", ERROR_DESCRIPTIONS[status]),
        }
        if status in (429, 503):
            entry["headers"] = _RETRY_AFTER
        documented[status] = entry
    return documented


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        error_type: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type
        self.headers = dict(headers or {})


def error_response(
    status: int, message: str, error_type: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    # A message may quote what the client sent (a field name, a value): lone surrogates
    # in it cannot be encoded as UTF-8, so they are written out as escapes.
    printable = message.encode("utf-8", "backslashreplace").decode("utf-8")
    return JSONResponse(
        {"error": {"message": printable, "type": error_type}}, status_code=status, headers=headers
    )


# pydantic names the member of a union in an error's location ("str", "int",
# "function-after[...]", "list[...]"): not part of the field's path.
_UNION_MEMBERS = frozenset({"str", "int", "float", "bool", "none"})


def _is_union_member(part: object) -> bool:
    return isinstance(part, str) and (part in _UNION_MEMBERS or ("[" in part and part != "[key]"))


def _is_type_mismatch(error: Any) -> bool:
    kind = str(error.get("type", ""))
    return kind.endswith(("_type", "_parsing"))


def validation_message(errors: Sequence[Any]) -> str:
    """The first few problems of a pydantic/FastAPI error list, on one line: one per field,
    and for a union field the member's real complaint (a refused value) over the others'
    "not my type"."""
    chosen: dict[str, Any] = {}
    for err in errors:
        loc = err.get("loc", ())
        where = ".".join(str(p) for p in loc if p != "body" and not _is_union_member(p))
        where = where or "body"
        if where not in chosen or (_is_type_mismatch(chosen[where]) and not _is_type_mismatch(err)):
            chosen[where] = err
    # A union member that got further into the value (`input.1`) says more than one that
    # refused its type at the top (`input`).
    deeper = [
        where
        for where, err in chosen.items()
        if _is_type_mismatch(err) and any(o.startswith(where + ".") for o in chosen)
    ]
    for where in deeper:
        del chosen[where]
    parts = [f"{where}: {err.get('msg', 'invalid')}" for where, err in list(chosen.items())[:5]]
    return "; ".join(parts) or "invalid request"


async def _on_api_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.message, exc.error_type, exc.headers)


async def _on_validation_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return error_response(422, validation_message(exc.errors()), "validation_error")


async def _on_http_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error_response(exc.status_code, str(exc.detail), "http_error", exc.headers)


def _refused(exc: ValidationError) -> ApiError:
    errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]
    return ApiError(422, validation_message(errors), "validation_error")


def parse_body(model: type[ModelT], raw: bytes) -> ModelT:
    """Validate a JSON body straight from bytes (pydantic's fast path), 422 on failure."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        if not any(e["type"] == "json_invalid" for e in exc.errors()):
            raise _refused(exc) from exc
        refused = exc
    # pydantic's parser refuses some JSON Python's reads (a lone surrogate escape): read
    # it as FastAPI reads every other body, so the answer is the same and names the field.
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        raise _refused(refused) from refused
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _refused(exc) from exc


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _on_api_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(HTTPException, _on_http_error)


class HttpMiddleware:
    """A pure ASGI middleware that handles HTTP requests and passes the other scopes
    (lifespan, websockets) through. Pure ASGI, unlike Starlette's BaseHTTPMiddleware, so
    a response streams through it untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self.handle(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise NotImplementedError


class BodySizeLimit(HttpMiddleware):
    """Refuse bodies over ``max_bytes`` with 413, by declared length or while streaming.

    A body without Content-Length (chunked) is read here first, up to the limit, and
    replayed to the app: the JSON endpoints read whole bodies anyway, and a 413 must be
    sent before the app starts parsing (it would turn a failed read into a 400).
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        super().__init__(app)
        self.max_bytes = max_bytes

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit():
            if int(declared) > self.max_bytes:
                await self._refuse(scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = f"request body exceeds {self.max_bytes} bytes"
        await error_response(413, message, "payload_too_large")(scope, receive, send)
