"""In-process checks of the request guards: Host and Origin rules, the key cache and the
failure limit, and the per-route body limits (their real-server counterparts are in
tests/test_e2e_request_guards.py)."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import cast

import pytest
from fastapi import FastAPI
from pydantic import BaseModel
from sqlalchemy import create_engine
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient
from starlette.types import Message, Scope

from tandem.api.app import ready
from tandem.api.auth import Authenticator, FailureLimiter, Refusal
from tandem.api.body_limits import RouteBodyLimits
from tandem.api.state import ApiState
from tandem.config_fields import LOOPBACK_HOSTS
from tandem.db.principals import Caller, hash_key
from tandem.http.guards import (
    HostAllowlist,
    RequestGuards,
    cross_site_refusal,
    same_origin,
    split_host,
)
from tests.support import free_port

LOCAL = HostAllowlist.parse(LOOPBACK_HOSTS)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("127.0.0.1:8080", ("127.0.0.1", 8080)),
        ("LocalHost", ("localhost", None)),
        ("[::1]:3000", ("::1", 3000)),
        ("[::1]", ("::1", None)),
        ("::1", None),  # IPv6 must be bracketed
        ("host:99999", None),
        ("host:x", None),
        ("", None),
        ("[::1", None),
    ],
)
def test_split_host(header: str, expected: tuple[str, int | None] | None) -> None:
    assert split_host(header) == expected


def test_loopback_names_with_any_port_and_nothing_else_by_default() -> None:
    for host in ("127.0.0.1:8080", "localhost:3000", "[::1]:1", "localhost", "127.0.0.1"):
        assert LOCAL.allows(host), host
    for host in ("evil.example:8080", "127.0.0.1.evil.example", "localhost.evil", "0.0.0.0"):
        assert not LOCAL.allows(host), host


def test_configured_hosts_suffixes_and_wildcard() -> None:
    listed = HostAllowlist.parse("api-server, web_server,.corp.example")
    assert listed.allows("api-server:8080") and listed.allows("web_server")
    assert listed.allows("search.corp.example") and listed.allows("corp.example:443")
    assert not listed.allows("localhost") and not listed.allows("evilcorp.example")
    assert HostAllowlist.parse("*").allows("anything.example:1")


@pytest.mark.parametrize(
    ("origin", "host", "same"),
    [
        ("http://127.0.0.1:3000", "127.0.0.1:3000", True),
        ("http://LOCALHOST:3000", "localhost:3000", True),
        ("https://search.example", "search.example", True),
        ("https://search.example", "search.example:443", True),
        ("http://search.example", "search.example:443", False),
        ("http://127.0.0.1:5555", "127.0.0.1:3000", False),
        ("http://localhost:3000", "127.0.0.1:3000", False),
        ("null", "127.0.0.1:3000", False),
        ("file://", "127.0.0.1:3000", False),
    ],
)
def test_same_origin(origin: str, host: str, same: bool) -> None:
    assert same_origin(origin, host) is same


def scope(method: str, **headers: str) -> Scope:
    raw = [(k.replace("_", "-").lower().encode(), v.encode()) for k, v in headers.items()]
    return {"type": "http", "method": method, "path": "/api/documents", "headers": raw}


def test_state_changing_requests_from_other_origins_are_refused() -> None:
    api = {"host": "127.0.0.1:8080"}
    assert cross_site_refusal(scope("POST", **api)) is None  # the CLI, curl: no Origin
    assert cross_site_refusal(scope("POST", origin="http://127.0.0.1:8080", **api)) is None
    refused = cross_site_refusal(scope("POST", origin="http://127.0.0.1:5555", **api))
    assert refused is not None and "127.0.0.1:5555" in refused
    assert cross_site_refusal(scope("DELETE", origin="null", **api)) is not None
    assert cross_site_refusal(scope("PUT", sec_fetch_site="cross-site", **api)) is not None
    # Reads are the browser's to protect (no CORS headers are ever sent): not refused here.
    assert cross_site_refusal(scope("GET", origin="http://127.0.0.1:5555", **api)) is None
    # Through a proxy: compared with the Host the browser addressed, not the API's own.
    proxied = {"host": "127.0.0.1:8080", "x_forwarded_host": "127.0.0.1:3000"}
    assert cross_site_refusal(scope("POST", origin="http://127.0.0.1:3000", **proxied)) is None
    assert cross_site_refusal(scope("POST", origin="http://127.0.0.1:8080", **proxied))


def test_guard_middleware_answers_400_and_403_in_the_error_envelope() -> None:
    async def ok(_: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    app = Starlette(
        routes=[Route("/api/x", ok, methods=["GET", "POST"])],
        middleware=[Middleware(RequestGuards, allowed_hosts=LOCAL)],
    )
    with TestClient(app, base_url="http://127.0.0.1:8080") as client:
        assert client.post("/api/x").json() == {"ok": True}
        foreign = client.get("/api/x", headers={"Host": "rebind.example:8080"})
        assert foreign.status_code == 400
        assert foreign.json()["error"]["type"] == "host_not_allowed"
        cross = client.post("/api/x", headers={"Origin": "http://127.0.0.1:5555"})
        assert cross.status_code == 403
        assert cross.json()["error"]["type"] == "cross_site_request"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def authenticator(clock: Clock, lookups: list[str], per_minute: int = 5) -> Authenticator:
    def lookup(digest: str) -> Caller | None:
        lookups.append(digest)
        return Caller(1, "ok") if digest == GOOD_DIGEST else None

    return Authenticator(
        lookup,
        valid_seconds=5.0,
        failures=FailureLimiter(per_minute, clock=clock),
        unknown_seconds=2.0,
        clock=clock,
    )


GOOD_DIGEST = hash_key("tdm_good")


def test_valid_keys_are_cached_for_at_most_their_lifetime() -> None:
    clock, lookups = Clock(), list[str]()
    auth = authenticator(clock, lookups)
    assert asyncio.run(auth.authenticate("tdm_good", "a")) == Caller(1, "ok")
    clock.now += 4.9
    assert asyncio.run(auth.authenticate("tdm_good", "a")) == Caller(1, "ok")
    assert len(lookups) == 1
    clock.now += 0.2  # past 5 s: looked up again (a revoked key would now be refused)
    asyncio.run(auth.authenticate("tdm_good", "a"))
    assert len(lookups) == 2


def test_unknown_keys_are_cached_and_failures_limited_per_address() -> None:
    clock, lookups = Clock(), list[str]()
    auth = authenticator(clock, lookups, per_minute=5)
    for _ in range(3):  # one unknown key, tried again: one lookup
        assert asyncio.run(auth.authenticate("tdm_bad", "a")) == Refusal(401)
    assert len(lookups) == 1
    verdicts = [asyncio.run(auth.authenticate(f"tdm_random{i}", "a")) for i in range(20)]
    assert verdicts[:2] == [Refusal(401)] * 2  # the budget of 5 failures is spent...
    assert all(v.status == 429 and v.retry_after == 12 for v in verdicts[2:])  # type: ignore[union-attr]
    assert len(lookups) == 3  # ...and nothing more is looked up for this address
    assert asyncio.run(auth.authenticate("tdm_random", "b")) == Refusal(401)  # others may
    # A key that is already known good still works from the throttled address.
    assert asyncio.run(auth.authenticate("tdm_good", "b")) == Caller(1, "ok")
    assert asyncio.run(auth.authenticate("tdm_good", "a")) == Caller(1, "ok")
    clock.now += 12.5  # one failure's worth of budget back
    assert asyncio.run(auth.authenticate("tdm_later", "a")) == Refusal(401)
    assert asyncio.run(auth.authenticate("tdm_later2", "a")).status == 429  # type: ignore[union-attr]


class Query(BaseModel):
    query: str


def limited_app(limit: int, idle_seconds: float = 60.0) -> RouteBodyLimits:
    app = FastAPI()

    @app.post("/api/search")
    def search(body: Query) -> dict[str, str]:
        return {"query": body.query}

    return RouteBodyLimits(app, lambda _method, _path: limit, idle_seconds=idle_seconds)


def test_body_limits_by_declared_length_and_while_streaming() -> None:
    with TestClient(limited_app(100), base_url="http://127.0.0.1:8080") as client:
        assert client.post("/api/search", json={"query": "wren"}).status_code == 200
        declared = client.post("/api/search", json={"query": "w" * 200})
        assert declared.status_code == 413
        assert declared.json()["error"] == {
            "message": "request body exceeds 100 bytes",
            "type": "payload_too_large",
        }
        chunks = iter([b'{"query": "', b"w" * 200, b'"}'])
        streamed = client.post("/api/search", content=chunks)  # chunked: no length
        assert streamed.status_code == 413  # not FastAPI's 400 for the cut-short read


def test_a_stalled_body_is_answered_408() -> None:
    sent: list[Message] = []
    first = [{"type": "http.request", "body": b'{"query": ', "more_body": True}]

    async def stalls() -> Message:
        if first:
            return first.pop()
        await asyncio.sleep(3600)  # the client never sends the rest
        raise AssertionError("unreachable")

    async def collect(message: Message) -> None:
        sent.append(message)

    request: Scope = {
        "type": "http",
        "method": "POST",
        "path": "/api/search",
        "headers": [(b"content-type", b"application/json")],
        "query_string": b"",
    }
    asyncio.run(limited_app(1000, idle_seconds=0.2)(request, stalls, collect))
    assert sent[0]["status"] == 408
    assert (b"connection", b"close") in sent[0]["headers"]


def test_readiness_names_the_database_without_its_error_text() -> None:
    unreachable = f"postgresql+psycopg://tandem:s3cret@127.0.0.1:{free_port()}/tandem"
    engine = create_engine(unreachable, connect_args={"connect_timeout": 2})
    try:
        answer = ready(cast(ApiState, SimpleNamespace(engine=engine)))
    finally:
        engine.dispose()
    assert answer.status_code == 503
    assert json.loads(bytes(answer.body)) == {"ready": False, "detail": "database unreachable"}
