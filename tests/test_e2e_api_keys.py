"""API keys over real HTTP against an API server that requires them: which requests are
refused, on which endpoints, and how soon a revoked key stops working."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import create_engine, text

from tandem.db.session import normalize_url
from tests.e2e_support import Backends, create_api_key, running, start_api
from tests.support import ServerProcess, free_port

CACHE_SECONDS = 2.0
BATCH = {"documents": [{"id": "owl", "title": "Owls", "text": "Owls hunt at night."}]}


@pytest.fixture(scope="module")
def locked_api(backends: Backends) -> Iterator[ServerProcess]:
    nowhere = f"http://127.0.0.1:{free_port()}"  # no model server needed for these checks
    env = {"TANDEM_API_KEY_CACHE_SECONDS": str(CACHE_SECONDS)}
    with running(start_api(backends, nowhere, open_access=False, env=env)) as server:
        yield server


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def revoke(backends: Backends, key: str) -> None:
    """What an operator does: set revoked_at on the key's row (found by its prefix)."""
    engine = create_engine(normalize_url(backends.database_url))
    with engine.begin() as connection:
        revoked = connection.execute(
            text("UPDATE api_keys SET revoked_at = now() WHERE prefix = :prefix"),
            {"prefix": key[:10]},
        ).rowcount
    engine.dispose()
    assert revoked == 1


def assert_unauthorized(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.json()["error"]["type"] == "unauthorized"
    assert response.headers["www-authenticate"] == "Bearer"


PROTECTED = [
    ("GET", "/api/documents", None),
    ("GET", "/api/documents/owl", None),
    ("DELETE", "/api/documents/owl", None),
    ("POST", "/api/documents/batch", BATCH),
    ("GET", f"/api/index-attempts/{uuid.UUID(int=1)}", None),
    ("POST", "/api/search", {"query": "owls", "mode": "keyword"}),
    ("GET", "/api/stats", None),
]


@pytest.mark.parametrize(
    ("method", "path", "body"), PROTECTED, ids=[f"{m} {p}" for m, p, _ in PROTECTED]
)
@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Basic dXNlcjpwYXNz", "Token tdm_x", "Bearer tdm_not-a-key"],
)
def test_every_data_endpoint_refuses_a_missing_or_bad_key(
    locked_api: ServerProcess,
    method: str,
    path: str,
    body: dict[str, object] | None,
    authorization: str | None,
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = httpx.request(method, f"{locked_api.url}{path}", json=body, headers=headers)
    assert_unauthorized(response)


def test_a_valid_key_opens_attempts_and_batch_ingest(
    locked_api: ServerProcess, backends: Backends
) -> None:
    key = create_api_key(backends, "attempts")
    accepted = httpx.post(f"{locked_api.url}/api/documents/batch", json=BATCH, headers=bearer(key))
    assert accepted.status_code == 202, accepted.text
    attempt_id = accepted.json()["attempt_id"]
    attempt = httpx.get(f"{locked_api.url}/api/index-attempts/{attempt_id}", headers=bearer(key))
    assert attempt.status_code == 200, attempt.text
    assert attempt.json()["items"][0]["document_id"] == "owl"
    # The scheme is case-insensitive (RFC 7235); the key itself is not.
    lower = httpx.get(f"{locked_api.url}/api/documents", headers={"Authorization": f"bearer {key}"})
    assert lower.status_code == 200
    assert_unauthorized(httpx.get(f"{locked_api.url}/api/documents", headers=bearer(key.upper())))
    # Health and readiness stay open: probes carry no key.
    assert httpx.get(f"{locked_api.url}/api/health").status_code == 200
    assert httpx.get(f"{locked_api.url}/api/ready").status_code == 200


def test_a_key_revoked_before_its_first_use_is_refused_at_once(
    locked_api: ServerProcess, backends: Backends
) -> None:
    key = create_api_key(backends, "revoked-early")
    revoke(backends, key)
    assert_unauthorized(httpx.get(f"{locked_api.url}/api/documents", headers=bearer(key)))


def test_a_revoked_key_in_use_is_refused_within_the_cache_lifetime(
    locked_api: ServerProcess, backends: Backends
) -> None:
    key = create_api_key(backends, "revoked-in-use")
    url = f"{locked_api.url}/api/documents"
    assert httpx.get(url, headers=bearer(key)).status_code == 200  # now cached as valid
    revoke(backends, key)
    revoked_at = time.monotonic()
    deadline = revoked_at + CACHE_SECONDS + 5.0  # the lifetime, plus a slow machine's margin
    while (response := httpx.get(url, headers=bearer(key))).status_code == 200:
        assert time.monotonic() < deadline, "a revoked key was still accepted"
        time.sleep(0.1)
    assert_unauthorized(response)
    # Refused for good, not only once.
    assert_unauthorized(httpx.get(url, headers=bearer(key)))
