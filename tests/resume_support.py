"""Killing workers at chosen moments, and checking what got indexed against an expectation
built from the uploaded text and the model's tokenizer (never the worker's own Chunker)."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import create_engine, text
from tokenizers import Tokenizer

from tandem.db.session import normalize_url
from tandem.model_client.client import ModelClient
from tandem.wire.model import TextType
from tandem.worker.stages import Stage
from tests.held_worker import HOLD_AFTER, HOLD_AT, HOLD_FILE
from tests.support import ServerProcess

# Leases that run out 3 s after a worker dies, swept every second; and a broker that would
# redeliver a dead worker's message only after an hour: any resume seen is the sweep's.
FAST_LEASES = {
    "TANDEM_LEASE_SECONDS": "3",
    "TANDEM_SWEEP_SECONDS": "1",
    "TANDEM_TASK_VISIBILITY_TIMEOUT": "3600",
}
WINDOW_TOKENS = 256
CLAIM_LINE = re.compile(r"batch_claimed origin=(\w+) redelivered=(\w+) items=([\d,]+)")


def hold_env(stage: Stage, hold_file: Path, after: int = 0) -> dict[str, str]:
    """What makes `start_worker` run tests/held_worker.py, stopping at `stage`."""
    return {HOLD_AT: str(stage), HOLD_FILE: str(hold_file), HOLD_AFTER: str(after)}


def wait_for_hold(worker: ServerProcess, hold_file: Path, timeout: float = 120.0) -> str:
    """The line the held worker wrote on reaching its stage."""
    deadline = time.monotonic() + timeout
    while not (hold_file.exists() and hold_file.read_text().endswith("\n")):
        if worker.process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"the worker never reached its hold:\n{worker.log()}")
        time.sleep(0.05)
    return hold_file.read_text().splitlines()[0]


@dataclass(frozen=True)
class Claim:
    origin: str
    redelivered: bool
    items: tuple[int, ...]


def claimed_batches(log: str) -> list[Claim]:
    claims = []
    for line in log.splitlines():
        if not line.startswith("{"):
            continue
        match = CLAIM_LINE.search(str(json.loads(line).get("event", "")))
        if match:
            items = tuple(int(i) for i in match[3].split(","))
            claims.append(Claim(match[1], match[2] == "True", items))
    return claims


@dataclass(frozen=True)
class ItemState:
    id: int
    document_id: str
    status: str
    claims: int
    lease_owner: str | None


@dataclass(frozen=True)
class StoredChunk:
    ordinal: int
    title: str
    text: str
    embedding: list[float]


class Database:
    def __init__(self, url: str) -> None:
        self._url = normalize_url(url)

    def _rows(self, query: str, **params: object) -> list[tuple[Any, ...]]:
        engine = create_engine(self._url)
        try:
            with engine.connect() as connection:
                return [tuple(r) for r in connection.execute(text(query), params)]
        finally:
            engine.dispose()

    def reset(self) -> None:
        engine = create_engine(self._url)
        try:
            with engine.begin() as connection:
                connection.execute(text("TRUNCATE documents, index_attempts CASCADE"))
        finally:
            engine.dispose()

    def expire_leases(self) -> None:
        """As if every lease ran out now (the heartbeat's worker is dead)."""
        engine = create_engine(self._url)
        try:
            with engine.begin() as connection:
                connection.execute(
                    text(
                        "UPDATE index_attempt_items SET lease_expires_at = now() "
                        "WHERE status = 'running'"
                    )
                )
        finally:
            engine.dispose()

    def items(self, attempt_id: str) -> list[ItemState]:
        rows = self._rows(
            "SELECT id, document_id, status, claims, lease_owner FROM index_attempt_items "
            "WHERE attempt_id = :id ORDER BY id",
            id=attempt_id,
        )
        return [ItemState(*r) for r in rows]

    def chunk_counts(self) -> dict[str, int]:
        rows = self._rows("SELECT document_id, count(*) FROM chunks GROUP BY document_id")
        return {str(r[0]): int(r[1]) for r in rows}

    def catalog(self) -> dict[str, int]:
        return {str(r[0]): int(r[1]) for r in self._rows("SELECT id, chunk_count FROM documents")}

    def chunks(self) -> dict[str, list[StoredChunk]]:
        found: dict[str, list[StoredChunk]] = {}
        for document_id, ordinal, title, body, embedding in self._rows(
            "SELECT document_id, ordinal, title, text, embedding::text FROM chunks "
            "ORDER BY document_id, ordinal"
        ):
            found.setdefault(str(document_id), []).append(
                StoredChunk(int(ordinal), str(title), str(body), json.loads(str(embedding)))
            )
        return found

    def corpus_chunks(self) -> int | None:
        """The BM25 statistics' chunk count (kept by triggers), where the table exists."""
        exists = self._rows("SELECT to_regclass('bm25_corpus') IS NOT NULL")[0][0]
        if not exists:
            return None
        return int(self._rows("SELECT chunks FROM bm25_corpus")[0][0])


def short_text(n: int) -> str:
    return (
        f"Field note {n}: the grey heron at pond {n % 17} stood still for {n % 9 + 2} minutes, "
        f"then caught {n % 5} small fish and flew north over the reeds."
    )


def long_text() -> str:
    paragraphs = [
        f"Paragraph {i} of the field report describes sample {i * 7 % 97} taken near "
        f"station {i % 13}, with readings of salinity, temperature and dissolved oxygen "
        "recorded every hour during the survey of the estuary and its tidal channels."
        for i in range(300)
    ]
    return "\n\n".join(paragraphs)


def check_indexed_exactly_once(
    database: Database,
    documents: dict[str, bytes],
    model_cache: Path,
    indexing_url: str,
    titles: dict[str, str] | None = None,
) -> None:
    """Every document is indexed once, as the uploaded text says it must be: ordinals
    0..n-1; each chunk an exact span of the text, in order, overlapping or touching the
    one before with nothing but whitespace skipped, the first at the text's start and the
    last at its end; each chunk's embed text within the model's window (counted with the
    model's tokenizer); a short document one chunk equal to its text; stored vectors that
    are the indexing server's embedding of `title + newline + text`."""
    tokenizer = Tokenizer.from_file(str(model_cache / "all-MiniLM-L6-v2" / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    stored = database.chunks()
    assert set(stored) == set(documents)
    assert database.catalog() == {d: len(c) for d, c in stored.items()}
    corpus = database.corpus_chunks()
    if corpus is not None:
        assert corpus == sum(len(c) for c in stored.values())
    samples: list[tuple[str, StoredChunk]] = []
    for name, data in documents.items():
        body = data.decode()
        chunks = stored[name]
        title = (titles or {}).get(name, Path(name).stem)
        assert [c.ordinal for c in chunks] == list(range(len(chunks))), name
        assert {c.title for c in chunks} == {title}
        position, reach = 0, 0
        for chunk in chunks:
            start = body.find(chunk.text, position)
            assert start >= 0, (name, chunk.ordinal)
            assert not body[reach:start].strip(), (name, chunk.ordinal, "gap")
            assert len(tokenizer.encode(f"{title}\n{chunk.text}").ids) <= WINDOW_TOKENS
            position, reach = start + 1, max(reach, start + len(chunk.text))
        assert not body[: body.find(chunks[0].text)].strip()
        assert not body[reach:].strip(), (name, "tail")
        if len(tokenizer.encode(f"{title}\n{body}").ids) <= WINDOW_TOKENS // 2:
            assert [c.text for c in chunks] == [body.strip()]
            samples.append((title, chunks[0]))
    client = ModelClient(indexing_url, timeout=60.0)
    try:
        picked = samples[:3] + samples[3:][-3:]  # distinct texts
        expected = client.embed([f"{t}\n{c.text}" for t, c in picked], TextType.PASSAGE)
    finally:
        client.close()
    stored_vectors = np.asarray([c.embedding for _, c in picked], np.float32)
    similarity = stored_vectors @ expected.T
    # int8 activations are quantized per batch, so a vector depends a little on its
    # batch-mates (cosine ~0.994); another text's vector is far lower (< 0.97 here).
    assert np.all(np.diag(similarity) > 0.98), np.diag(similarity)
    assert list(similarity.argmax(axis=1)) == list(range(len(picked)))
