"""The model server over real HTTP: both roles, the wire shapes, and every error code."""

from __future__ import annotations

import base64
import concurrent.futures
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
from tokenizers import Tokenizer

from tandem.model_files import TOKENIZER_FILE
from tests.support import ServerProcess, model_server, start_model_server

QUERIES = ["how do I reset my password", "quarterly revenue report 2024", "nginx upload limit"]


def embed(server: ServerProcess, texts: list[str], **extra: object) -> httpx.Response:
    return httpx.post(
        f"{server.url}/encoder/bi-encoder-embed",
        json={"texts": texts, "max_context_length": 512, "normalize_embeddings": True} | extra,
        timeout=60,
    )


def assert_error(response: httpx.Response, status: int, error_type: str | None = None) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type"}
    assert body["error"]["message"]
    if error_type is not None:
        assert body["error"]["type"] == error_type
    return str(body["error"]["message"])


def test_both_roles_ready_and_report_their_role(
    inference_server: ServerProcess, indexing_server: ServerProcess
) -> None:
    for server, role in ((inference_server, "inference"), (indexing_server, "indexing")):
        assert httpx.get(f"{server.url}/api/health").json() == {"status": "ok", "role": role}
        ready = httpx.get(f"{server.url}/api/ready")
        assert ready.status_code == 200
        assert ready.json()["ready"] is True
        assert ready.json()["role"] == role
        assert ready.json()["threads"] >= 1


def test_both_roles_embed_identically(
    inference_server: ServerProcess, indexing_server: ServerProcess
) -> None:
    a = np.array(embed(inference_server, QUERIES).json()["embeddings"])
    b = np.array(embed(indexing_server, QUERIES).json()["embeddings"])
    assert a.shape == (3, 384)
    np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)


def test_query_prefix_and_truncation(inference_server: ServerProcess) -> None:
    text = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu"
    prefixed = embed(
        inference_server, [text], text_type="query", manual_query_prefix="query: "
    ).json()["embeddings"]
    manual = embed(inference_server, ["query: " + text]).json()["embeddings"]
    np.testing.assert_allclose(prefixed, manual, atol=1e-6)
    # A passage ignores the query prefix.
    passage = embed(
        inference_server, [text], text_type="passage", manual_query_prefix="query: "
    ).json()["embeddings"]
    assert not np.allclose(passage, manual, atol=1e-3)
    # Truncation at max_context_length tokens: [CLS] + 6 word pieces + [SEP] = 8.
    short = embed(inference_server, [text], max_context_length=8).json()["embeddings"]
    cut = embed(inference_server, ["alpha beta gamma delta epsilon zeta"]).json()["embeddings"]
    np.testing.assert_allclose(short, cut, atol=1e-5)


def test_unnormalized_embeddings_keep_their_norm(inference_server: ServerProcess) -> None:
    raw = np.array(
        embed(inference_server, QUERIES, normalize_embeddings=False).json()["embeddings"]
    )
    norms = np.linalg.norm(raw, axis=1)
    assert np.all(np.abs(norms - 1.0) > 0.01)
    normalized = np.array(embed(inference_server, QUERIES).json()["embeddings"])
    np.testing.assert_allclose(raw / norms[:, None], normalized, atol=1e-5)


def test_openai_client_round_trip(inference_server: ServerProcess, model_cache: Path) -> None:
    client = openai.OpenAI(base_url=f"{inference_server.url}/v1", api_key="unused", max_retries=0)
    # The official client asks for base64 by default and decodes it itself.
    result = client.embeddings.create(model="all-MiniLM-L6-v2", input=QUERIES)
    assert [d.index for d in result.data] == [0, 1, 2]
    vectors = np.array([d.embedding for d in result.data])
    reference = np.array(embed(inference_server, QUERIES).json()["embeddings"])
    np.testing.assert_allclose(vectors, reference, atol=1e-6)
    tokenizer = Tokenizer.from_file(str(model_cache / "all-MiniLM-L6-v2" / TOKENIZER_FILE))
    expected_tokens = sum(len(e.ids) for e in tokenizer.encode_batch(QUERIES))
    assert result.usage.prompt_tokens == expected_tokens == result.usage.total_tokens
    floats = client.embeddings.create(
        model="sentence-transformers/all-MiniLM-L6-v2",
        input="how do I reset my password",
        encoding_format="float",
        dimensions=128,
    )
    short = np.array(floats.data[0].embedding)
    assert short.shape == (128,)
    assert abs(np.linalg.norm(short) - 1.0) < 1e-5
    # One model is served: any name gets it, and the response says which.
    assert client.embeddings.create(model="text-embedding-3-large", input="x").model == (
        "all-MiniLM-L6-v2"
    )


def test_openai_base64_is_little_endian_float32(inference_server: ServerProcess) -> None:
    body = httpx.post(
        f"{inference_server.url}/v1/embeddings",
        json={"input": QUERIES[0], "encoding_format": "base64"},
    ).json()
    decoded = np.frombuffer(base64.b64decode(body["data"][0]["embedding"]), dtype="<f4")
    reference = embed(inference_server, QUERIES[:1]).json()["embeddings"][0]
    np.testing.assert_allclose(decoded, reference, atol=1e-6)
    assert body["object"] == "list" and body["data"][0]["object"] == "embedding"


def test_tei_embed(indexing_server: ServerProcess) -> None:
    single = httpx.post(f"{indexing_server.url}/embed", json={"inputs": QUERIES[0]})
    assert single.status_code == 200
    assert np.array(single.json()).shape == (1, 384)
    reference = embed(indexing_server, QUERIES[:1]).json()["embeddings"]
    np.testing.assert_allclose(single.json(), reference, atol=1e-5)
    long_text = "word " * 600
    assert_error(
        httpx.post(f"{indexing_server.url}/embed", json={"inputs": [long_text], "truncate": False}),
        413,
        "input_too_long",
    )
    # Truncated by default: the vector of the text's first tokens, like the native API's.
    truncated = httpx.post(f"{indexing_server.url}/embed", json={"inputs": [long_text]})
    assert truncated.status_code == 200
    cut = embed(indexing_server, [long_text]).json()["embeddings"]
    np.testing.assert_allclose(truncated.json(), cut, atol=1e-5)
    assert not np.allclose(truncated.json(), reference, atol=1e-2)


@pytest.mark.parametrize(
    ("path", "payload", "status", "error_type"),
    [
        ("/encoder/bi-encoder-embed", {"texts": []}, 400, "invalid_request"),
        ("/encoder/bi-encoder-embed", {"texts": ["ok", ""]}, 400, "invalid_request"),
        ("/encoder/bi-encoder-embed", {"texts": ["ok", "   "]}, 400, "invalid_request"),
        ("/encoder/bi-encoder-embed", {"texts": "not a list"}, 422, "validation_error"),
        ("/encoder/bi-encoder-embed", {"texts": ["a"], "max_context_length": 0}, 422, None),
        ("/encoder/bi-encoder-embed", {"texts": ["a"], "provider_type": "openai"}, 400, None),
        ("/v1/embeddings", {"input": ""}, 400, "invalid_request"),
        ("/v1/embeddings", {"input": []}, 400, "invalid_request"),
        ("/v1/embeddings", {"input": "a", "encoding_format": "int8"}, 422, "validation_error"),
        ("/v1/embeddings", {"input": "a", "dimensions": 4096}, 400, "invalid_request"),
        ("/embed", {"inputs": []}, 400, "invalid_request"),
        ("/embed", {}, 422, "validation_error"),
    ],
)
def test_bad_input_gets_a_clear_4xx(
    inference_server: ServerProcess,
    path: str,
    payload: dict[str, object],
    status: int,
    error_type: str | None,
) -> None:
    assert_error(httpx.post(f"{inference_server.url}{path}", json=payload), status, error_type)


def test_malformed_json_is_422(inference_server: ServerProcess) -> None:
    response = httpx.post(
        f"{inference_server.url}/encoder/bi-encoder-embed",
        content=b'{"texts": [',
        headers={"content-type": "application/json"},
    )
    assert_error(response, 422, "validation_error")


LIMITED = {
    "TANDEM_MAX_REQUEST_BYTES": "20000",
    "TANDEM_MAX_ITEMS_PER_REQUEST": "16",
    "TANDEM_MAX_QUEUE_ITEMS": "8",
}


def test_limits_queue_bound_and_recovery(model_cache: Path, server_logs: Path) -> None:
    with model_server("indexing", server_logs, LIMITED) as server:
        assert_error(embed(server, ["word"] * 17), 413, "too_many_items")
        assert_error(embed(server, ["x" * 30000]), 413, "payload_too_large")
        chunked = httpx.post(
            f"{server.url}/encoder/bi-encoder-embed",
            content=iter([b'{"texts": ["', b"y" * 25000, b'"]}']),
            headers={"content-type": "application/json"},
        )
        assert_error(chunked, 413, "payload_too_large")

        # A burst far over the queue bound: some are refused with 429 + Retry-After,
        # the rest are served, and the server stays healthy.
        passage = "the indexing server embeds passages in bulk " * 20

        def send(_: int) -> httpx.Response:
            return embed(server, [passage] * 8)

        with concurrent.futures.ThreadPoolExecutor(32) as pool:
            responses = list(pool.map(send, range(64)))
        statuses = [r.status_code for r in responses]
        assert set(statuses) <= {200, 429}, statuses
        assert statuses.count(429) > 0
        assert statuses.count(200) > 0
        refused = next(r for r in responses if r.status_code == 429)
        assert refused.headers["retry-after"] == "1"
        assert_error(refused, 429, "overloaded")
        assert httpx.get(f"{server.url}/api/health").status_code == 200
        assert embed(server, QUERIES).status_code == 200
        metrics = httpx.get(f"{server.url}/metrics").text
        assert 'tandem_requests_total{endpoint="/encoder/bi-encoder-embed",status="429"}' in metrics
        assert "tandem_batch_size_bucket" in metrics
        assert 'tandem_queue_items{model="all-MiniLM-L6-v2"} 0.0' in metrics


def test_shutdown_drains_in_flight_requests(model_cache: Path, server_logs: Path) -> None:
    server = start_model_server("indexing", server_logs)
    try:
        # Sized by this machine's speed: the request must still be in flight when SIGTERM
        # comes, however fast the hardware (about 4 s of work, at least 160 passages).
        sample = [f"passage number {i} about draining requests " * 25 for i in range(64)]
        started = time.monotonic()
        assert embed(server, sample).status_code == 200
        per_passage = (time.monotonic() - started) / len(sample)
        count = min(2048, max(160, int(4.0 / per_passage)))
        passages = [f"passage number {i} about draining requests " * 25 for i in range(count)]
        result: dict[str, httpx.Response] = {}
        answered: dict[str, float] = {}

        def send() -> None:
            result["r"] = embed(server, passages)
            answered["at"] = time.monotonic()

        worker = threading.Thread(target=send)
        worker.start()
        idle = 'tandem_queue_items{model="all-MiniLM-L6-v2"} 0.0'
        deadline = time.monotonic() + 10
        while idle in httpx.get(f"{server.url}/metrics").text:  # until it is being worked on
            assert time.monotonic() < deadline, "the request never showed up in the queue"
            assert worker.is_alive(), "the request finished before it was seen in the queue"
            time.sleep(0.01)
        signalled = time.monotonic()
        code = server.stop(timeout=60)
        worker.join(60)
        # The answer came after SIGTERM: the request was in flight during the shutdown.
        assert answered["at"] > signalled
        assert result["r"].status_code == 200
        assert len(result["r"].json()["embeddings"]) == len(passages)
        assert code in (0, -15)  # uvicorn re-raises SIGTERM after a clean shutdown
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{server.url}/api/health")
    finally:
        server.stop()


def test_indexing_only_env_selects_role_and_cpus_cap_threads(
    model_cache: Path, server_logs: Path
) -> None:
    env = {"INDEXING_ONLY": "true", "TANDEM_CPUS": "0"}
    with model_server(None, server_logs, env) as server:
        ready = httpx.get(f"{server.url}/api/ready").json()
        assert ready["role"] == "indexing"
        assert ready["threads"] == 1


def test_missing_model_is_a_clear_startup_error(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "tandem.cli", "model-server", "--role", "inference", "--port", "1"],
        env=os.environ | {"TANDEM_MODEL_CACHE": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 2
    assert "tandem models prepare" in completed.stderr
    assert "Traceback" not in completed.stderr
