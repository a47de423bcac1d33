"""`tandem reindex`: every chunk re-embedded in place with the indexing server's current
model and precision, resumable after an interruption, keyword statistics untouched.

Real PostgreSQL, Redis, API server and worker; documents are indexed through the real
pipeline by an int8 indexing server, then re-embedded by an fp32 one.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from redis import Redis
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from tandem.config_fields import DEFAULT_EMBEDDING_MODEL
from tandem.db.models import Chunk
from tandem.db.session import make_engine, make_session_factory
from tandem.documents.parsed import ParsedDocument
from tandem.index.postgres import PostgresIndex
from tandem.index.protocol import IndexedChunk
from tandem.model_client.client import ModelClient
from tandem.model_files import FloatArray, ModelKind, locate_prepared
from tandem.wire.model import TextType
from tandem.worker.chunking import Chunker
from tandem.worker.reindex import ProgressStore, Reindexer, plan_run, served_model
from tests.e2e_support import Backends, running, start_api, start_worker, upload, wait_attempt
from tests.support import ServerProcess, start_model_server

DOCUMENTS = 40
BATCH = 16  # documents per reindex batch: 40 documents make three batches


class Interrupted(RuntimeError):
    pass


def _document(n: int) -> bytes:
    body = " ".join(
        f"Paragraph {p} of note {n}: the tide turns twice a day, herons wait in the reeds."
        for p in range(1 + (n % 4) * 12)  # one to four chunks
    )
    return f"# Coastal note {n}\n\n{body}\n".encode()


@pytest.fixture(scope="module")
def fp32_indexing_server(server_logs: Path, model_cache: Path) -> Iterator[ServerProcess]:
    server = start_model_server("indexing", server_logs, {"TANDEM_PRECISION": "fp32"})
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def indexed(
    backends: Backends, inference_server: ServerProcess, indexing_server: ServerProcess
) -> Backends:
    """DOCUMENTS markdown notes indexed through the API and a worker (int8 server)."""
    with (
        running(start_api(backends, inference_server.url)) as api,
        running(start_worker(backends, indexing_server.url)),
    ):
        files = {f"note-{n:02d}.md": _document(n) for n in range(DOCUMENTS)}
        response = upload(api, files)
        assert response.status_code == 202, response.text
        attempt = wait_attempt(api, response.json()["attempt_id"])
        assert attempt["status"] == "succeeded" and attempt["failed"] == 0
    return backends


def _sessions(backends: Backends) -> sessionmaker[Session]:
    return make_session_factory(make_engine(backends.database_url, pool_size=2))


def _stored(sessions: sessionmaker[Session]) -> list[tuple[str, str, str, np.ndarray]]:
    with sessions() as session:
        rows = session.execute(
            select(Chunk.document_id, Chunk.title, Chunk.text, Chunk.embedding).order_by(
                Chunk.document_id, Chunk.ordinal
            )
        ).all()
    return [(r[0], r[1], r[2], np.asarray(r[3], dtype=np.float32)) for r in rows]


def _cosines(stored: list[tuple[str, str, str, np.ndarray]], server: ServerProcess) -> np.ndarray:
    """Cosine of each stored vector to `server`'s embedding of what the chunk holds."""
    client = ModelClient(server.url, timeout=120)
    try:
        expected = client.embed(
            [f"{title}\n{body}" for _, title, body, _ in stored], TextType.PASSAGE
        )
    finally:
        client.close()
    vectors = np.stack([v for *_, v in stored])
    cosines: np.ndarray = np.einsum("ij,ij->i", vectors, expected) / (
        np.linalg.norm(vectors, axis=1) * np.linalg.norm(expected, axis=1)
    )
    return cosines


def _bm25_state(sessions: sessionmaker[Session]) -> tuple[object, ...]:
    with sessions() as session:
        corpus = session.execute(text("SELECT chunks, total_length FROM bm25_corpus")).one()
        postings = session.execute(
            text("SELECT count(*), sum(tf), sum(length) FROM bm25_postings")
        ).one()
    return (*corpus, *postings)


def test_a_chunk_was_embedded_as_title_newline_body(model_cache: Path) -> None:
    """The invariant reindexing rests on: the pipeline embeds the stored title and text."""
    directory, _ = locate_prepared(model_cache, DEFAULT_EMBEDDING_MODEL, ModelKind.BI_ENCODER)
    chunker = Chunker.from_model_dir(directory)
    parsed = ParsedDocument(
        title="A title long enough to matter " * 3,
        text=_document(3).decode(),
        path="note.md",
        content_type="text/markdown",
    )
    chunks = chunker.chunk(parsed)
    assert len(chunks) > 1
    assert all(c.embed_text == f"{c.title}\n{c.text}" for c in chunks)


def _reindex_cli(backends: Backends, server: ServerProcess, *args: str) -> str:
    host, _, port = server.url.removeprefix("http://").partition(":")
    env = os.environ | backends.env(
        INDEXING_MODEL_SERVER_HOST=host, INDEXING_MODEL_SERVER_PORT=port, COLUMNS="200"
    )
    done = subprocess.run(
        [sys.executable, "-m", "tandem.cli", "reindex", "--batch-documents", str(BATCH), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    return done.stderr


def test_reindex_re_embeds_every_chunk_and_resumes(
    indexed: Backends, indexing_server: ServerProcess, fp32_indexing_server: ServerProcess
) -> None:
    sessions = _sessions(indexed)
    before = _stored(sessions)
    bm25_before = _bm25_state(sessions)
    assert len({d for d, *_ in before}) == DOCUMENTS and len(before) > DOCUMENTS
    # What the pipeline stored is the int8 server's embedding of title + "\n" + text
    # (int8 activations are quantized per batch, hence not exactly equal) and not fp32's.
    assert _cosines(before, indexing_server).min() > 0.98
    assert _cosines(before, fp32_indexing_server).min() < 0.9999

    # A first run stops after its first batch, as a killed process would.
    redis = Redis.from_url(indexed.redis_url)
    store = ProgressStore(redis)
    model = served_model(fp32_indexing_server.url)
    assert (model.model_id, model.precision) == (DEFAULT_EMBEDDING_MODEL, "float32")
    embedder = ModelClient(fp32_indexing_server.url, timeout=120)

    def stop_after_first(_run: object, _documents: int) -> None:
        raise Interrupted

    with pytest.raises(Interrupted):
        Reindexer(sessions, embedder, store, documents_per_batch=BATCH).run(
            plan_run(store.load(), model, restart=False), stop_after_first
        )
    embedder.close()
    saved = store.load()
    assert saved is not None and not saved.finished
    assert saved.documents == BATCH and saved.after == "note-15.md"
    partial = _stored(sessions)
    cosines = _cosines(partial, fp32_indexing_server)
    first = np.array([d <= saved.after for d, *_ in partial])
    assert cosines[first].min() > 0.99999  # the first batch is fp32 now
    assert cosines[~first].min() < 0.9999  # the rest is not yet

    output = _reindex_cli(indexed, fp32_indexing_server)
    assert f"resuming after {BATCH} done" in output
    # The run's totals: the interrupted part and the resumed part together.
    assert f"done: {DOCUMENTS} documents, {len(before)} chunks re-embedded" in output
    assert re.search(r"reindexing .* 40/40 +[\d.]+ docs/s .* ETA", output), output
    after = _stored(sessions)
    assert [(d, t, b) for d, t, b, _ in after] == [(d, t, b) for d, t, b, _ in before]
    assert _cosines(after, fp32_indexing_server).min() > 0.99999
    assert _bm25_state(sessions) == bm25_before  # postings rewritten by the trigger, same

    # Finished: a second run does nothing unless asked to start again.
    assert "already re-embedded" in _reindex_cli(indexed, fp32_indexing_server)
    again = _reindex_cli(indexed, fp32_indexing_server, "--restart")
    assert f"done: {DOCUMENTS} documents, {len(before)} chunks" in again
    finished = store.load()
    assert finished is not None and finished.finished and finished.documents == DOCUMENTS
    redis.close()


class ReplacingOnFirstEmbed(ModelClient):
    """The indexing server's client, with a document replaced (as a worker re-indexing an
    upload would) right after the reindex read its chunks and before it writes vectors."""

    def __init__(self, url: str, replace: Callable[[], None]) -> None:
        super().__init__(url, timeout=120)
        self._replace: Callable[[], None] | None = replace

    def embed(self, texts: list[str], text_type: TextType) -> FloatArray:
        if self._replace is not None:
            replace, self._replace = self._replace, None
            replace()
        return super().embed(texts, text_type)


def test_a_document_replaced_during_a_batch_keeps_its_new_vectors(
    indexed: Backends, fp32_indexing_server: ServerProcess
) -> None:
    sessions = _sessions(indexed)
    fresh = ModelClient(fp32_indexing_server.url, timeout=120)
    title, bodies = "Lanterns", ["A lantern of brass hung by the door.", "Its wick was trimmed."]
    new_vectors = fresh.embed([f"{title}\n{b}" for b in bodies], TextType.PASSAGE)
    fresh.close()

    def replace_note_05() -> None:
        PostgresIndex(sessions).replace_document(
            "note-05.md",
            [
                IndexedChunk(i, body, title, "note-05.md", "text/markdown", 12, new_vectors[i])
                for i, body in enumerate(bodies)
            ],
        )

    redis = Redis.from_url(indexed.redis_url)
    embedder = ReplacingOnFirstEmbed(fp32_indexing_server.url, replace_note_05)
    model = served_model(fp32_indexing_server.url)
    done = Reindexer(sessions, embedder, ProgressStore(redis), documents_per_batch=BATCH).run(
        plan_run(None, model, restart=True)
    )
    embedder.close()
    redis.close()
    assert done.finished and done.documents == DOCUMENTS
    stored = _stored(sessions)
    replaced = [row for row in stored if row[0] == "note-05.md"]
    # The batch's UPDATE matched the old chunks' ids, which were gone: the new chunks keep
    # the vectors of their own text, not those of the text the batch had read.
    assert [(t, b) for _, t, b, _ in replaced] == [(title, b) for b in bodies]
    for (*_, vector), expected in zip(replaced, new_vectors, strict=True):
        assert float(np.dot(vector, expected)) > 0.99999
    assert _cosines(stored, fp32_indexing_server).min() > 0.99999


def test_without_urls_reindex_uses_the_local_stack(tmp_path: Path) -> None:
    from tandem.commands.data import local_stack_urls
    from tandem.config import WorkerSettings
    from tandem.local.stack import LocalPorts

    ports = LocalPorts()
    local = local_stack_urls(WorkerSettings(database_url=None, redis_url=None, data_dir=tmp_path))
    assert local.database_url is not None and f":{ports.postgres}/" in local.database_url
    password = (tmp_path / "redis.password").read_text().strip()
    assert local.redis_url == f"redis://:{password}@127.0.0.1:{ports.redis}/0"
    given = WorkerSettings(database_url="postgresql://db/x", redis_url="redis://r:1/0")
    assert local_stack_urls(given) is given
