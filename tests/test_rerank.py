"""Reranking over real HTTP, against a cross-encoder built and prepared offline here.

A MiniLM cross-encoder is fine-tuned in seconds (tests/cross_encoder_fixture.py), prepared
into a throwaway model cache by `tandem models prepare-reranker`, and served by a real inference
model server. Its scores must equal torch's own forward pass of the same weights, and it
must rank each topic's passage first for that topic's question.
"""

from __future__ import annotations

import math
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tandem.config import ModelCacheSettings
from tandem.model_files import ModelKind, locate_prepared, model_dir
from tandem.model_server.onnx_model import load_model
from tests.cross_encoder_fixture import (
    MAX_LENGTH,
    TOPICS,
    TorchCrossEncoder,
    TrainingRun,
    build_cross_encoder,
)
from tests.e2e_support import Backends, running, search, start_api, start_worker, wait_attempt
from tests.support import ServerProcess, model_server

pytestmark = pytest.mark.slow

RERANKER = "minilm-test-reranker"
TOLERANCE = 1e-4
PASSAGES = [passage for passage, _ in TOPICS]
LONG_DOCUMENT = " ".join(PASSAGES * 2)  # well over 512 tokens: exercises truncation
MEDIUM_DOCUMENT = " ".join(PASSAGES[:5])
# Varied lengths on both sides: one word, short, medium, long, over the context length.
QUERIES = [
    "tides",
    "how many squares on a chess board",
    " ".join(PASSAGES[10:14]),
]
DOCUMENTS = [
    "Moon",
    PASSAGES[17],
    "Tides rise and fall twice a day.",
    MEDIUM_DOCUMENT,
    PASSAGES[8],
    LONG_DOCUMENT,
]


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def assert_error(response: httpx.Response, status: int, error_type: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type"}
    assert body["error"]["type"] == error_type
    message = body["error"]["message"]
    assert isinstance(message, str)
    assert message
    return message


@pytest.fixture(scope="module")
def trained_cross_encoder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, TrainingRun]:
    directory = tmp_path_factory.mktemp("cross-encoder")
    return directory, build_cross_encoder(directory)


@pytest.fixture(scope="module")
def cross_encoder_dir(trained_cross_encoder: tuple[Path, TrainingRun]) -> Path:
    return trained_cross_encoder[0]


@pytest.fixture(scope="module")
def reference(cross_encoder_dir: Path) -> TorchCrossEncoder:
    return TorchCrossEncoder(cross_encoder_dir)


@pytest.fixture(scope="module")
def cli_preparation(
    cross_encoder_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """Our reranker prepared once, by `tandem models prepare-reranker`: the CLI's test reads
    its output and the module's server serves its cache (a preparation costs minutes of
    CPU on a busy machine: one serves both)."""
    cache = tmp_path_factory.mktemp("rerank-cache")
    done = tandem(
        "models",
        "prepare-reranker",
        "--from",
        str(cross_encoder_dir),
        "--name",
        RERANKER,
        cache=cache,
    )
    return cache, done


@pytest.fixture(scope="module")
def rerank_cache(
    model_cache: Path, cli_preparation: tuple[Path, subprocess.CompletedProcess[str]]
) -> Path:
    """A cache holding the session's prepared embedding model (linked) and our reranker."""
    cache, done = cli_preparation
    assert done.returncode == 0, done.stderr
    embedding = ModelCacheSettings().embedding_model
    (cache / embedding).symlink_to(model_dir(model_cache, embedding), target_is_directory=True)
    return cache


@pytest.fixture(scope="module")
def rerank_server(rerank_cache: Path, server_logs: Path) -> Iterator[ServerProcess]:
    env = {"TANDEM_MODEL_CACHE": str(rerank_cache), "TANDEM_RERANK_MODEL": RERANKER}
    with model_server("inference", server_logs, env) as server:
        yield server


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=60.0) as http:
        yield http


def onyx_scores(client: httpx.Client, url: str, query: str, documents: list[str]) -> list[float]:
    response = client.post(
        f"{url}/encoder/cross-encoder-scores", json={"query": query, "documents": documents}
    )
    assert response.status_code == 200, response.text
    scores = response.json()["scores"]
    assert isinstance(scores, list)
    return [float(s) for s in scores]


def tei_rerank(client: httpx.Client, url: str, **body: Any) -> list[dict[str, Any]]:
    response = client.post(f"{url}/rerank", json=body)
    assert response.status_code == 200, response.text
    ranks = response.json()
    assert isinstance(ranks, list)
    return ranks


# --- the model itself --------------------------------------------------------------


def test_cross_encoder_was_trained(trained_cross_encoder: tuple[Path, TrainingRun]) -> None:
    directory, run = trained_cross_encoder
    assert run.final_loss < 0.5, run  # BCE of an untrained head sits near ln 2 = 0.69
    for name in ("config.json", "model.safetensors", "tokenizer.json", "vocab.txt"):
        assert (directory / name).is_file(), name


def test_prepared_manifest(rerank_cache: Path) -> None:
    directory, manifest = locate_prepared(rerank_cache, RERANKER, ModelKind.CROSS_ENCODER)
    assert manifest.name == RERANKER
    assert manifest.kind is ModelKind.CROSS_ENCODER
    assert manifest.dimensions == 1
    assert manifest.max_seq_length == MAX_LENGTH
    assert (directory / "model.onnx").is_file()


def test_documents_exceed_the_context(reference: TorchCrossEncoder) -> None:
    """Guards the numerics tests below: they must cover truncation, not only short pairs."""
    assert reference.pair_length(QUERIES[0], LONG_DOCUMENT) > MAX_LENGTH
    assert reference.pair_length(QUERIES[2], MEDIUM_DOCUMENT) < MAX_LENGTH
    assert reference.pair_length(QUERIES[0], "Moon") < 10


# --- scores over HTTP equal torch's forward pass ------------------------------------


def test_ready_reports_the_reranker(rerank_server: ServerProcess, client: httpx.Client) -> None:
    body = client.get(f"{rerank_server.url}/api/ready").json()
    assert body["ready"] is True
    assert body["role"] == "inference"
    assert body["rerank_model"] == RERANKER


@pytest.mark.parametrize("query", QUERIES, ids=["one-word", "question", "long"])
def test_onyx_scores_match_torch(
    rerank_server: ServerProcess, reference: TorchCrossEncoder, client: httpx.Client, query: str
) -> None:
    scores = onyx_scores(client, rerank_server.url, query, DOCUMENTS)
    expected = [sigmoid(x) for x in reference.logits(query, DOCUMENTS)]
    assert len(scores) == len(DOCUMENTS)
    for got, want in zip(scores, expected, strict=True):
        assert 0.0 < got < 1.0
        assert got == pytest.approx(want, abs=TOLERANCE)


@pytest.mark.parametrize("query", QUERIES, ids=["one-word", "question", "long"])
def test_tei_raw_scores_are_torch_logits_sorted(
    rerank_server: ServerProcess, reference: TorchCrossEncoder, client: httpx.Client, query: str
) -> None:
    ranks = tei_rerank(client, rerank_server.url, query=query, texts=DOCUMENTS, raw_scores=True)
    logits = reference.logits(query, DOCUMENTS)
    assert sorted(r["index"] for r in ranks) == list(range(len(DOCUMENTS)))
    scores = [r["score"] for r in ranks]
    assert scores == sorted(scores, reverse=True)
    for rank in ranks:
        assert set(rank) == {"index", "score"}
        assert rank["score"] == pytest.approx(logits[rank["index"]], abs=TOLERANCE)
    # Raw logits are not squashed: a trained head spreads them beyond (0, 1).
    assert any(not 0.0 < s < 1.0 for s in scores)


def test_tei_default_scores_are_sigmoid_and_text_is_optional(
    rerank_server: ServerProcess, reference: TorchCrossEncoder, client: httpx.Client
) -> None:
    query = QUERIES[1]
    expected = [sigmoid(x) for x in reference.logits(query, DOCUMENTS)]
    plain = tei_rerank(client, rerank_server.url, query=query, texts=DOCUMENTS)
    with_text = tei_rerank(
        client, rerank_server.url, query=query, texts=DOCUMENTS, return_text=True
    )
    assert [r["index"] for r in plain] == [r["index"] for r in with_text]
    assert [r["index"] for r in plain] == sorted(range(len(DOCUMENTS)), key=lambda i: -expected[i])
    for rank in plain:
        assert set(rank) == {"index", "score"}
        assert 0.0 < rank["score"] < 1.0
        assert rank["score"] == pytest.approx(expected[rank["index"]], abs=TOLERANCE)
    for rank in with_text:
        assert rank["text"] == DOCUMENTS[rank["index"]]
        assert rank["score"] == pytest.approx(expected[rank["index"]], abs=TOLERANCE)


def test_both_apis_agree_and_scores_do_not_depend_on_the_batch(
    rerank_server: ServerProcess, client: httpx.Client
) -> None:
    query = QUERIES[0]
    together = onyx_scores(client, rerank_server.url, query, DOCUMENTS)
    alone = [onyx_scores(client, rerank_server.url, query, [doc])[0] for doc in DOCUMENTS]
    assert together == pytest.approx(alone, abs=TOLERANCE)
    ranks = tei_rerank(client, rerank_server.url, query=query, texts=DOCUMENTS)
    for rank in ranks:
        assert rank["score"] == pytest.approx(together[rank["index"]], abs=1e-6)


# --- it reranks meaningfully --------------------------------------------------------


def test_tei_truncate_false_refuses_pairs_over_the_context(
    rerank_server: ServerProcess, reference: TorchCrossEncoder, client: httpx.Client
) -> None:
    url = f"{rerank_server.url}/rerank"
    texts = ["short text", LONG_DOCUMENT]
    body = {"query": QUERIES[0], "texts": texts, "truncate": False}
    message = assert_error(client.post(url, json=body), 413, "input_too_long")
    assert "index 1" in message
    body["truncate"] = True
    truncated = client.post(url, json=body)
    assert truncated.status_code == 200, truncated.text
    # Scored like torch scores the pair cut to the context length, not refused or zeroed.
    expected = [sigmoid(x) for x in reference.logits(QUERIES[0], texts)]
    ranks = truncated.json()
    assert sorted(r["index"] for r in ranks) == [0, 1]
    for rank in ranks:
        assert rank["score"] == pytest.approx(expected[rank["index"]], abs=TOLERANCE)


def test_relevant_passage_ranks_first(rerank_server: ServerProcess, client: httpx.Client) -> None:
    rng = random.Random(7)
    for topic, (passage, question) in enumerate(TOPICS):
        others = [p for i, p in enumerate(PASSAGES) if i != topic]
        candidates = [passage, *rng.sample(others, 5)]
        rng.shuffle(candidates)
        ranks = tei_rerank(client, rerank_server.url, query=question, texts=candidates)
        top = candidates[ranks[0]["index"]]
        assert top == passage, (question, ranks)
        scores = onyx_scores(client, rerank_server.url, question, candidates)
        assert max(range(len(scores)), key=scores.__getitem__) == candidates.index(passage)


# --- errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "fragment"),
    [
        ("/rerank", {"query": "", "texts": ["a passage"]}, "query"),
        ("/rerank", {"query": "   ", "texts": ["a passage"]}, "query"),
        ("/rerank", {"query": "tides", "texts": []}, "texts must not be empty"),
        ("/rerank", {"query": "tides", "texts": ["a passage", ""]}, "texts[1]"),
        ("/encoder/cross-encoder-scores", {"query": "", "documents": ["a passage"]}, "query"),
        (
            "/encoder/cross-encoder-scores",
            {"query": "tides", "documents": []},
            "documents must not be empty",
        ),
        (
            "/encoder/cross-encoder-scores",
            {"query": "tides", "documents": ["", "a passage"]},
            "documents[0]",
        ),
    ],
    ids=[
        "tei-empty-query",
        "tei-blank-query",
        "tei-no-texts",
        "tei-empty-text",
        "onyx-empty-query",
        "onyx-no-documents",
        "onyx-empty-document",
    ],
)
def test_invalid_requests_are_400(
    rerank_server: ServerProcess,
    client: httpx.Client,
    path: str,
    body: dict[str, Any],
    fragment: str,
) -> None:
    response = client.post(f"{rerank_server.url}{path}", json=body)
    message = assert_error(response, 400, "invalid_request")
    assert fragment in message


def test_onyx_model_name_gets_the_served_reranker(
    rerank_server: ServerProcess, client: httpx.Client
) -> None:
    # One reranker is served: any name gets it, as TEI answers. Strict names are opt-in
    # (TANDEM_STRICT_MODEL_NAME, tested in test_openai_tei_compat).
    url = f"{rerank_server.url}/encoder/cross-encoder-scores"
    body = {"query": "tides", "documents": ["Moon"]}
    for name in ("cross-encoder/ms-marco-MiniLM-L-6-v2", f"some-org/{RERANKER}"):
        response = client.post(url, json=body | {"model_name": name})
        assert response.status_code == 200, response.text
        assert len(response.json()["scores"]) == 1


# --- servers that do not rerank -----------------------------------------------------

VALID_BODIES = {
    "/rerank": {"query": "tides", "texts": ["Moon"]},
    "/encoder/cross-encoder-scores": {"query": "tides", "documents": ["Moon"]},
}


@pytest.mark.parametrize("path", list(VALID_BODIES))
def test_indexing_role_points_to_the_inference_server(
    indexing_server: ServerProcess, client: httpx.Client, path: str
) -> None:
    response = client.post(f"{indexing_server.url}{path}", json=VALID_BODIES[path])
    message = assert_error(response, 404, "wrong_role")
    assert "inference model server" in message


@pytest.mark.parametrize("path", list(VALID_BODIES))
def test_inference_without_reranker_is_501(
    inference_server: ServerProcess, client: httpx.Client, path: str
) -> None:
    response = client.post(f"{inference_server.url}{path}", json=VALID_BODIES[path])
    message = assert_error(response, 501, "reranker_not_configured")
    assert "prepare-reranker" in message
    assert "TANDEM_RERANK_MODEL" in message
    ready = client.get(f"{inference_server.url}/api/ready").json()
    assert ready["rerank_model"] is None


# --- the CLI ------------------------------------------------------------------------


def tandem(*args: str, cache: Path) -> subprocess.CompletedProcess[str]:
    # A wide console so rich does not wrap the messages we look for.
    # One torch thread, as tests/cross_encoder_fixture.py's torch_threads(1) explains.
    env = os.environ | {"TANDEM_MODEL_CACHE": str(cache), "COLUMNS": "400", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "tandem.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def test_cli_prepares_and_lists_a_reranker(
    cross_encoder_dir: Path,
    reference: TorchCrossEncoder,
    cli_preparation: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    cache, done = cli_preparation
    name = RERANKER
    assert done.returncode == 0, done.stderr
    assert f"TANDEM_RERANK_MODEL={name}" in done.stderr
    directory, manifest = locate_prepared(cache, name, ModelKind.CROSS_ENCODER)
    assert manifest.source == f"dir:{cross_encoder_dir.name}"

    listed = tandem("models", "list", cache=cache)
    assert listed.returncode == 0, listed.stderr
    rows = [line.split("\t") for line in listed.stdout.splitlines()]
    assert [name, "cross-encoder", "dims=1", f"max_seq={MAX_LENGTH}"] in [r[:4] for r in rows]

    # The CLI's export scores like torch too (checked without a server).
    model = load_model(directory, manifest, threads=1, spinning=False)
    query, documents = QUERIES[1], DOCUMENTS[:3]
    logits = model.run(model.tokenize_pairs(query, documents))[:, 0]
    assert logits.tolist() == pytest.approx(reference.logits(query, documents), abs=TOLERANCE)


@pytest.mark.parametrize("kind", ["missing", "not-a-model"])
def test_cli_prepare_reranker_fails_cleanly(tmp_path: Path, kind: str) -> None:
    source = tmp_path / "no-such-model"
    if kind == "not-a-model":
        source.mkdir()
    cache = tmp_path / "cache"
    done = tandem("models", "prepare-reranker", "--from", str(source), "--name", "x", cache=cache)
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "Traceback" not in output
    assert "error:" in output
    expected = "is not a directory" if kind == "missing" else "has no tokenizer.json"
    assert expected in " ".join(output.split())
    assert not (cache / "x").exists()


# --- search with rerank through the API -----------------------------------------------
# Against the HTTP API only: how the route forms its candidate pool may change.

# Each decoy repeats its question's words in another sense, so keyword retrieval puts it
# first; the cross-encoder knows the topic's passage answers the question.
DECOYS = {
    "who wrote hamlet": (
        "The agency wrote the Hamlet cigar advert; it wrote every Hamlet cigar advert since."
    ),
    "how long is a marathon": (
        "Marathon TV sessions: a marathon of films, a long marathon evening on the sofa."
    ),
    "where do penguins live": (
        "Penguins, the publisher's paperbacks, live on shelves: penguins live in every bookshop."
    ),
}


@pytest.fixture(scope="module")
def search_corpus(
    backends: Backends, indexing_server: ServerProcess, rerank_server: ServerProcess
) -> Iterator[tuple[ServerProcess, dict[str, str]]]:
    """An API server whose inference server reranks, over the topics' passages plus decoys;
    yields it with each document's indexed text."""
    documents = [
        {"id": f"topic-{i:02d}", "title": f"Topic {i}", "text": passage}
        for i, (passage, _) in enumerate(TOPICS)
    ] + [
        {"id": f"decoy-{i}", "title": f"Decoy {i}", "text": text}
        for i, text in enumerate(DECOYS.values())
    ]
    with (
        running(start_worker(backends, indexing_server.url)),
        running(start_api(backends, rerank_server.url)) as api,
    ):
        accepted = httpx.post(f"{api.url}/api/documents/batch", json={"documents": documents})
        assert wait_attempt(api, accepted.json()["attempt_id"])["status"] == "succeeded"
        texts = {}
        for document in documents:
            chunks = httpx.get(f"{api.url}/api/documents/{document['id']}").json()["chunks"]
            texts[document["id"]] = " ".join(c["text"] for c in chunks)
        yield api, texts


def ids(result: dict[str, Any]) -> list[str]:
    return [hit["document_id"] for hit in result["results"]]


def topic_id(question: str) -> str:
    return f"topic-{[q for _, q in TOPICS].index(question):02d}"


@pytest.mark.parametrize("question", list(DECOYS))
def test_search_reranks_a_wider_pool_than_it_returns(
    search_corpus: tuple[ServerProcess, dict[str, str]],
    reference: TorchCrossEncoder,
    question: str,
) -> None:
    api, texts = search_corpus
    retrieved = search(api, question, mode="keyword", limit=10)
    assert retrieved["reranked"] is False
    first = ids(retrieved)[0]
    assert first.startswith("decoy-"), ids(retrieved)  # the setup holds: keywords pick it
    top = search(api, question, mode="keyword", limit=1, rerank=True)
    assert top["reranked"] is True and top["notice"] is None
    # One result, and not retrieval's first: the reranker saw more candidates than that.
    (winner,) = ids(top)
    assert winner == topic_id(question) and winner in ids(retrieved)
    chosen, decoy = reference.logits(question, [texts[winner], texts[first]])
    assert chosen > decoy
    assert top["results"][0]["score"] == pytest.approx(sigmoid(chosen), abs=TOLERANCE)


def test_reranked_results_are_in_cross_encoder_order(
    search_corpus: tuple[ServerProcess, dict[str, str]], reference: TorchCrossEncoder
) -> None:
    api, texts = search_corpus
    question = "who wrote hamlet"
    result = search(api, question, mode="hybrid", limit=5, rerank=True)
    assert result["reranked"] is True
    found = ids(result)
    expected = [sigmoid(x) for x in reference.logits(question, [texts[i] for i in found])]
    scores = [hit["score"] for hit in result["results"]]
    assert scores == pytest.approx(expected, abs=TOLERANCE)
    assert scores == sorted(scores, reverse=True)
    assert found[0] == topic_id(question)


def test_search_without_a_reranker_says_so_and_keeps_retrieval_order(
    search_corpus: tuple[ServerProcess, dict[str, str]],
    backends: Backends,
    inference_server: ServerProcess,
) -> None:
    # The session's inference server has no reranker: it answers rerank calls with 501.
    with running(start_api(backends, inference_server.url)) as plain_api:
        question = TOPICS[0][1]
        plain = search(plain_api, question, mode="keyword", limit=5)
        asked = search(plain_api, question, mode="keyword", limit=5, rerank=True)
    assert asked["reranked"] is False and asked["degraded"] is False
    assert asked["notice"] is not None and "rerank" in asked["notice"].lower()
    assert ids(asked) == ids(plain)
