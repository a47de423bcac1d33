"""Both model servers with a bearer key (TANDEM_MODEL_SERVER_API_KEY), over real HTTP:
every model route refuses a caller without it (401, before any body is read), the probes,
/metrics and the OpenAPI document stay open, the clients send it, and fuzzing finds no
server error with the key set (the inference role's keyed fuzzing, which needs a
reranker, is in tests/test_fuzz_model_servers.py)."""

from __future__ import annotations

import secrets
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tandem.model_client.client import ModelClient, ModelServerUnauthorized
from tandem.wire.model import TextType
from tandem.worker.reindex import served_model
from tests.fuzz_support import assert_no_failures, fuzz
from tests.support import ServerProcess, model_server

pytestmark = pytest.mark.slow

KEY = f"key-{secrets.token_urlsafe(24)}"
# Every model route of either role, with a body it would accept.
MODEL_ROUTES = [
    ("POST", "/encoder/bi-encoder-embed", {"texts": ["tides"]}),
    ("POST", "/v1/embeddings", {"input": "tides"}),
    ("POST", "/embed", {"inputs": "tides"}),
    ("GET", "/v1/models", None),
    ("GET", "/v1/models/all-MiniLM-L6-v2", None),
    ("GET", "/info", None),
    ("POST", "/rerank", {"query": "q", "texts": ["t"]}),
    ("POST", "/encoder/cross-encoder-scores", {"query": "q", "documents": ["t"]}),
]
OPEN_ROUTES = ["/api/health", "/api/ready", "/metrics", "/openapi.json", "/docs"]


@pytest.fixture(scope="module")
def keyed_inference(model_cache: Path, server_logs: Path) -> Iterator[ServerProcess]:
    with model_server("inference", server_logs, {"TANDEM_MODEL_SERVER_API_KEY": KEY}) as server:
        yield server


@pytest.fixture(scope="module")
def keyed_indexing(model_cache: Path, server_logs: Path) -> Iterator[ServerProcess]:
    with model_server("indexing", server_logs, {"TANDEM_MODEL_SERVER_API_KEY": KEY}) as server:
        yield server


def call(
    server: ServerProcess, method: str, path: str, body: object, key: str | None
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}".strip()} if key is not None else {}
    return httpx.request(method, f"{server.url}{path}", json=body, headers=headers, timeout=60)


def assert_unauthorized(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
    error = response.json()["error"]
    assert error["type"] == "unauthorized"
    assert "key" in error["message"]


@pytest.mark.parametrize("role", ["inference", "indexing"])
def test_model_routes_need_the_key_and_the_probes_do_not(
    role: str, keyed_inference: ServerProcess, keyed_indexing: ServerProcess
) -> None:
    server = keyed_inference if role == "inference" else keyed_indexing
    for method, path, body in MODEL_ROUTES:
        for wrong in (None, "", "not-the-key", KEY + "x", KEY[:-1]):
            assert_unauthorized(call(server, method, path, body, wrong))
        answered = call(server, method, path, body, KEY)
        # With the key the route itself answers: 200, or what it answers without any key
        # configured (no reranker here: 501; the indexing role does not rerank: 404).
        expected = 200
        if "rerank" in path or "cross-encoder" in path:
            expected = 501 if role == "inference" else 404
        assert answered.status_code == expected, (path, answered.text)
    # The scheme is case-insensitive (RFC 9110); other schemes are not a bearer token.
    assert call(server, "GET", "/info", None, None).status_code == 401
    lower = httpx.get(f"{server.url}/info", headers={"Authorization": f"bearer {KEY}"})
    assert lower.status_code == 200
    basic = httpx.get(f"{server.url}/info", headers={"Authorization": f"Basic {KEY}"})
    assert_unauthorized(basic)
    for path in OPEN_ROUTES:
        assert httpx.get(f"{server.url}{path}", timeout=30).status_code == 200, path
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'tandem_requests_total{endpoint="/info",status="401"}' in metrics


def test_the_key_is_checked_before_the_body_is_read(keyed_indexing: ServerProcess) -> None:
    """Headers declaring 8 MB, and no body sent: the 401 comes at once."""
    host, port = keyed_indexing.url.removeprefix("http://").split(":")
    request = (
        "POST /encoder/bi-encoder-embed HTTP/1.1\r\nHost: x\r\n"
        "Content-Type: application/json\r\nContent-Length: 8000000\r\n\r\n"
    )
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request.encode())
        head = sock.recv(65536).decode()
    assert head.startswith("HTTP/1.1 401"), head


def test_the_openapi_document_says_which_operations_need_the_key(
    keyed_inference: ServerProcess,
) -> None:
    document = httpx.get(f"{keyed_inference.url}/openapi.json").json()
    schemes = document["components"]["securitySchemes"]
    assert schemes["ModelServerKey"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "The model server's TANDEM_MODEL_SERVER_API_KEY",
    }
    for path, item in document["paths"].items():
        for operation in item.values():
            if path in OPEN_ROUTES:
                assert "security" not in operation, path
            else:
                assert operation["security"] == [{"ModelServerKey": []}], path
                assert "401" in operation["responses"], path


def test_clients_send_the_key_and_say_when_it_is_missing(
    keyed_indexing: ServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    with_key = ModelClient(keyed_indexing.url, timeout=60, api_key=KEY)
    assert with_key.embed(["tides"], TextType.PASSAGE).shape == (1, 384)
    with_key.close()
    # Given no key, a client sends the one its process was started with.
    monkeypatch.setenv("TANDEM_MODEL_SERVER_API_KEY", KEY)
    from_env = ModelClient(keyed_indexing.url, timeout=60)
    assert from_env.embed(["tides"], TextType.PASSAGE).shape == (1, 384)
    from_env.close()
    # A missing or wrong key is not the request's fault: work waits, it does not fail.
    for key in ("", "wrong"):
        client = ModelClient(keyed_indexing.url, timeout=60, api_key=key)
        with pytest.raises(ModelServerUnauthorized, match="TANDEM_MODEL_SERVER_API_KEY"):
            client.embed(["tides"], TextType.PASSAGE)
        client.close()
    assert served_model(keyed_indexing.url, KEY).model_id == "all-MiniLM-L6-v2"


def test_fuzz_keyed_indexing_server(keyed_indexing: ServerProcess, tmp_path: Path) -> None:
    """The keyed inference server (with a reranker) is fuzzed in test_fuzz_model_servers."""
    result = fuzz(keyed_indexing.url, tmp_path, headers={"Authorization": f"Bearer {KEY}"})
    assert_no_failures(result)
