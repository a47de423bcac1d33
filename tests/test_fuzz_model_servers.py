"""Both model servers fuzzed from their OpenAPI documents: no 5xx, every status and body
as documented. Then one regression test for each server error fuzzing found."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tandem.config import ModelCacheSettings
from tandem.model_files import model_dir
from tandem.model_server.prepare import prepare_reranker
from tests.cross_encoder_fixture import build_cross_encoder, torch_threads
from tests.fuzz_support import assert_no_failures, fuzz
from tests.support import ServerProcess, model_server

pytestmark = pytest.mark.slow

RERANKER = "fuzz-reranker"
FUZZ_KEY = "fuzzing-model-server-key"
EMBEDDING_OPERATIONS = {
    "POST /encoder/bi-encoder-embed",
    "POST /v1/embeddings",
    "POST /embed",
    "GET /v1/models",
    "GET /info",
}
RERANK_OPERATIONS = {"POST /rerank", "POST /encoder/cross-encoder-scores"}


@pytest.fixture(scope="module")
def rerank_cache(model_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model cache with a reranker, so the rerank routes run for real. The
    cross-encoder's quality does not matter here: one training step is enough."""
    weights = tmp_path_factory.mktemp("fuzz-cross-encoder")
    build_cross_encoder(weights, steps=1)
    cache = tmp_path_factory.mktemp("fuzz-rerank-cache")
    embedding = ModelCacheSettings().embedding_model
    (cache / embedding).symlink_to(model_dir(model_cache, embedding), target_is_directory=True)
    with torch_threads(1):
        prepare_reranker(cache, RERANKER, weights)
    return cache


@pytest.fixture(scope="module")
def rerank_server(rerank_cache: Path, server_logs: Path) -> Iterator[ServerProcess]:
    env = {"TANDEM_MODEL_CACHE": str(rerank_cache), "TANDEM_RERANK_MODEL": RERANKER}
    with model_server("inference", server_logs, env) as server:
        yield server


@pytest.fixture(scope="module")
def keyed_rerank_server(rerank_cache: Path, server_logs: Path) -> Iterator[ServerProcess]:
    """The same with TANDEM_MODEL_SERVER_API_KEY (the indexing role's keyed fuzzing is in
    tests/test_model_server_key.py, with that module's keyed servers)."""
    env = {
        "TANDEM_MODEL_CACHE": str(rerank_cache),
        "TANDEM_RERANK_MODEL": RERANKER,
        "TANDEM_MODEL_SERVER_API_KEY": FUZZ_KEY,
    }
    with model_server("inference", server_logs, env) as server:
        yield server


def test_fuzz_inference_server(rerank_server: ServerProcess, tmp_path: Path) -> None:
    result = fuzz(rerank_server.url, tmp_path)
    assert_no_failures(result)
    assert set(result["documented"]) >= EMBEDDING_OPERATIONS | RERANK_OPERATIONS


def test_fuzz_inference_server_with_a_key(
    keyed_rerank_server: ServerProcess, tmp_path: Path
) -> None:
    """Every operation declares the key: sent, the routes answer as without one; left out
    (schemathesis's `ignored_auth` check), each answers 401."""
    result = fuzz(
        keyed_rerank_server.url, tmp_path, headers={"Authorization": f"Bearer {FUZZ_KEY}"}
    )
    assert_no_failures(result)
    assert set(result["documented"]) >= EMBEDDING_OPERATIONS | RERANK_OPERATIONS


def test_fuzz_indexing_server(indexing_server: ServerProcess, tmp_path: Path) -> None:
    result = fuzz(indexing_server.url, tmp_path)
    assert_no_failures(result)
    # The indexing role does not rerank: those paths answer 404 and are not documented.
    assert set(result["documented"]) >= EMBEDDING_OPERATIONS
    assert not RERANK_OPERATIONS & set(result["documented"])


# --- regressions: each was a 500 ---------------------------------------------------


def post_raw(server: ServerProcess, path: str, body: str) -> httpx.Response:
    """Send JSON text as written: a lone surrogate escape must reach the server as is."""
    return httpx.post(
        f"{server.url}{path}",
        content=body.encode(),
        headers={"content-type": "application/json"},
        timeout=30,
    )


def assert_refused(response: httpx.Response, field: str) -> None:
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["type"] == "validation_error"
    assert field in error["message"], error["message"]


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/embeddings", r'{"input": "tides \ud800 moon"}', "input"),
        ("/v1/embeddings", r'{"input": ["fine", "lone \udc00"]}', "input"),
        ("/embed", r'{"inputs": "tides \udfff"}', "inputs"),
        ("/embed", r'{"inputs": ["fine", "\ud83d"]}', "inputs"),
        ("/rerank", r'{"query": "q \ud800", "texts": ["a"]}', "query"),
        ("/rerank", r'{"query": "q", "texts": ["\udc00"]}', "texts.0"),
        ("/encoder/cross-encoder-scores", r'{"query": "q", "documents": ["\ud800"]}', "documents"),
        # Read by pydantic's own parser, which calls this invalid JSON: still named.
        ("/encoder/bi-encoder-embed", r'{"texts": ["ok", "\ud800"]}', "texts.1"),
    ],
)
def test_lone_surrogates_are_refused_naming_the_field(
    rerank_server: ServerProcess, path: str, body: str, field: str
) -> None:
    assert_refused(post_raw(rerank_server, path, body), field)


def test_a_surrogate_pair_is_text_and_embeds(rerank_server: ServerProcess) -> None:
    # \ud83c\udf0a is one code point (a wave emoji): valid, unlike either half alone.
    response = post_raw(rerank_server, "/embed", r'{"inputs": "tides \ud83c\udf0a"}')
    assert response.status_code == 200, response.text
    assert len(response.json()[0]) == 384


def test_flags_take_json_booleans_only(rerank_server: ServerProcess) -> None:
    assert_refused(post_raw(rerank_server, "/embed", '{"inputs": "a", "truncate": 0}'), "truncate")
    assert_refused(
        post_raw(rerank_server, "/rerank", '{"query": "a", "texts": ["b"], "raw_scores": "yes"}'),
        "raw_scores",
    )


def test_integer_parameters_have_bounds(rerank_server: ServerProcess) -> None:
    huge = 10**30
    assert_refused(
        post_raw(rerank_server, "/v1/embeddings", f'{{"input": "a", "dimensions": {huge}}}'),
        "dimensions",
    )
    assert_refused(
        post_raw(
            rerank_server,
            "/encoder/bi-encoder-embed",
            f'{{"texts": ["a"], "max_context_length": {huge}}}',
        ),
        "max_context_length",
    )
