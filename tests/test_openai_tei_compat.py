"""OpenAI and TEI clients work unchanged: any model name with one model served, the
models list, TEI's /info and TEI's documented request and response shapes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest

from tests.support import ServerProcess, model_server

pytestmark = pytest.mark.slow

SERVED = "all-MiniLM-L6-v2"
# What LangChain and LlamaIndex send unless told otherwise, and other common names.
CLIENT_DEFAULTS = ["text-embedding-3-small", "text-embedding-ada-002", "default", SERVED]


@pytest.fixture(scope="module")
def strict_server(model_cache: Path, server_logs: Path) -> Iterator[ServerProcess]:
    with model_server("indexing", server_logs, {"TANDEM_STRICT_MODEL_NAME": "true"}) as server:
        yield server


def openai_client(server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


@pytest.mark.parametrize("requested", CLIENT_DEFAULTS)
def test_any_model_name_gets_the_served_model(
    inference_server: ServerProcess, requested: str
) -> None:
    result = openai_client(inference_server).embeddings.create(
        model=requested, input=["tides and the moon"]
    )
    assert result.model == SERVED
    assert len(result.data[0].embedding) == 384


def test_any_name_gets_the_same_vectors(inference_server: ServerProcess) -> None:
    client = openai_client(inference_server)
    texts = ["how are tides caused", "nginx upload limit"]
    vectors = [
        np.array([d.embedding for d in client.embeddings.create(model=name, input=texts).data])
        for name in CLIENT_DEFAULTS
    ]
    for other in vectors[1:]:
        np.testing.assert_allclose(other, vectors[0], atol=1e-6)


def test_models_list_in_openai_shape(inference_server: ServerProcess) -> None:
    client = openai_client(inference_server)
    models = list(client.models.list())
    assert [m.id for m in models] == [SERVED]
    assert models[0].object == "model"
    assert models[0].owned_by == "tandem"
    assert models[0].created > 1_600_000_000  # when the model was prepared
    assert client.models.retrieve(SERVED).id == SERVED
    assert client.models.retrieve("sentence-transformers/all-MiniLM-L6-v2").id == SERVED
    # Without strict names, any name means the one served model, as for embeddings.
    assert client.models.retrieve("text-embedding-3-small").id == SERVED


def test_strict_model_names_are_opt_in(strict_server: ServerProcess) -> None:
    client = openai_client(strict_server)
    with pytest.raises(openai.NotFoundError) as refused:
        client.embeddings.create(model="text-embedding-3-small", input="x")
    assert "all-MiniLM-L6-v2" in str(refused.value)  # the message names the served model
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("text-embedding-3-small")
    # Loose spellings of the served name still match: the tail, in any case.
    for name in (SERVED, "sentence-transformers/ALL-MiniLM-L6-v2"):
        assert client.embeddings.create(model=name, input="x").model == SERVED
    onyx = httpx.post(
        f"{strict_server.url}/encoder/bi-encoder-embed",
        json={"texts": ["x"], "model_name": "nomic-ai/nomic-embed-text-v1"},
    )
    assert onyx.status_code == 404
    assert onyx.json()["error"]["type"] == "model_not_found"


def test_onyx_model_name_is_accepted_by_default(inference_server: ServerProcess) -> None:
    response = httpx.post(
        f"{inference_server.url}/encoder/bi-encoder-embed",
        json={"texts": ["x"], "model_name": "nomic-ai/nomic-embed-text-v1"},
    )
    assert response.status_code == 200, response.text
    assert len(response.json()["embeddings"][0]) == 384


# --- TEI: /info, /embed and its documented shapes -----------------------------------


TEI_INFO_FIELDS = {
    "model_id",
    "model_sha",
    "model_dtype",
    "model_type",
    "max_concurrent_requests",
    "max_input_length",
    "max_batch_tokens",
    "max_batch_requests",
    "max_client_batch_size",
    "auto_truncate",
    "tokenization_workers",
    "version",
    "sha",
    "docker_label",
}


def test_tei_info_names_the_model_and_the_limits(
    inference_server: ServerProcess, indexing_server: ServerProcess
) -> None:
    inference = httpx.get(f"{inference_server.url}/info").json()
    indexing = httpx.get(f"{indexing_server.url}/info").json()
    for info in (inference, indexing):
        assert set(info) == TEI_INFO_FIELDS
        assert info["model_id"] == SERVED
        assert info["model_type"] == {"embedding": {"pooling": "mean"}}
        assert info["model_dtype"] == "int8"  # the default precision
        assert info["max_input_length"] == 256  # MiniLM's window, under the 512 context
        assert info["max_client_batch_size"] == 2048
        assert info["auto_truncate"] is True
    # The roles' scheduling defaults, under TEI's names.
    assert (inference["max_batch_tokens"], indexing["max_batch_tokens"]) == (4096, 16384)
    assert (inference["max_batch_requests"], indexing["max_batch_requests"]) == (32, 64)
    assert (inference["max_concurrent_requests"], indexing["max_concurrent_requests"]) == (
        1024,
        16384,
    )


def test_tei_info_follows_the_configured_limits(model_cache: Path, server_logs: Path) -> None:
    env = {
        "TANDEM_MAX_ITEMS_PER_REQUEST": "16",
        "TANDEM_MAX_CONTEXT_LENGTH": "128",
        "TANDEM_PRECISION": "fp32",
    }
    with model_server("inference", server_logs, env) as server:
        info = httpx.get(f"{server.url}/info").json()
        assert info["max_client_batch_size"] == 16
        assert info["max_input_length"] == 128
        assert info["model_dtype"] == "float32"
        # Over max_client_batch_size: TEI answers 413, so does this server.
        too_many = httpx.post(f"{server.url}/embed", json={"inputs": ["x"] * 17})
        assert too_many.status_code == 413


def test_tei_embed_shapes(indexing_server: ServerProcess) -> None:
    """TEI's documented /embed: `inputs` a string or a list, `normalize`, `truncate`,
    and a list of vectors back, one per input, in input order."""
    url = f"{indexing_server.url}/embed"
    one = httpx.post(url, json={"inputs": "What is Deep Learning?"}).json()
    batch = httpx.post(url, json={"inputs": ["What is Deep Learning?", "Tides"]}).json()
    assert np.array(one).shape == (1, 384)
    assert np.array(batch).shape == (2, 384)
    np.testing.assert_allclose(batch[0], one[0], atol=1e-6)
    assert abs(np.linalg.norm(batch[1]) - 1.0) < 1e-5
    raw = httpx.post(url, json={"inputs": "Tides", "normalize": False}).json()
    assert abs(np.linalg.norm(raw[0]) - 1.0) > 0.01
    np.testing.assert_allclose(raw[0] / np.linalg.norm(raw[0]), batch[1], atol=1e-5)


def test_tei_rerank_shape_is_documented(inference_server: ServerProcess) -> None:
    """TEI's /rerank request and response shapes, as the OpenAPI document states them
    (scoring itself is tested against torch in test_rerank)."""
    document = httpx.get(f"{inference_server.url}/openapi.json").json()
    rerank = document["paths"]["/rerank"]["post"]
    body = rerank["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    request = document["components"]["schemas"][body.rsplit("/", 1)[-1]]
    assert set(request["properties"]) == {"query", "texts", "raw_scores", "return_text", "truncate"}
    assert request["required"] == ["query", "texts"]
    answer = rerank["responses"]["200"]["content"]["application/json"]["schema"]
    rank = document["components"]["schemas"][answer["items"]["$ref"].rsplit("/", 1)[-1]]
    assert {"index", "score", "text"} == set(rank["properties"])
    assert {"400", "413", "422", "429", "501", "503"} <= set(rerank["responses"])
