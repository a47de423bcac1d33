"""Re-embed every stored chunk with the model and precision the indexing server runs now
(`tandem reindex`), e.g. after switching `TANDEM_PRECISION`.

Documents' source files are not kept after indexing, but each chunk keeps its text and
its (fitted) title, which are exactly what was embedded (`title + "\\n" + body`), so the
vectors are replaced in place: chunk boundaries, text and keyword postings stay as they are.

Documents go in id order, a batch at a time: read the chunks, embed them on the indexing
server (outside any transaction), then one UPDATE per batch under the same per-document
advisory locks the indexing pipeline takes. A chunk replaced meanwhile by a new upload
has a new id and is skipped: its new vectors came from the current model already.

Progress (the last document done) is kept in Redis, so an interrupted run resumes where
it stopped; re-embedding is idempotent, so a batch done twice does no harm (nor do two
runs at once, beyond the wasted work: run one). Documents added during a run are embedded
by the indexing server's current model anyway.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime

import httpx
import numpy as np
from redis import Redis
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from tandem.db.models import EMBEDDING_DIMENSIONS
from tandem.index.chunk_writes import PostgresChunkWriter
from tandem.index.protocol import ChunkWriter
from tandem.model_client.client import ModelClient
from tandem.model_files import FloatArray
from tandem.wire.model import TEIInfo, TextType

PROGRESS_KEY = "tandem:reindex"
DEADLOCK = "40P01"
DEADLOCK_RETRIES = 3


class ReindexError(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class EmbeddingModel:
    """What the indexing server embeds with: its model and weights' precision."""

    model_id: str
    precision: str


def served_model(indexing_server_url: str, api_key: str | None = None) -> EmbeddingModel:
    """The indexing server's model, from its TEI-compatible `GET /info` (which needs the
    server's key when it has one)."""
    headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        response = httpx.get(f"{indexing_server_url}/info", headers=headers, timeout=10.0)
    except httpx.HTTPError as exc:
        raise ReindexError(
            f"cannot reach the indexing server {indexing_server_url}: {exc}"
        ) from exc
    if response.status_code != 200:
        raise ReindexError(
            f"the indexing server {indexing_server_url} is not ready: {response.status_code}"
        )
    info = TEIInfo.model_validate_json(response.content)
    return EmbeddingModel(info.model_id, info.model_dtype)


@dataclass(frozen=True, slots=True)
class ReindexRun:
    model_id: str
    precision: str
    started_at: str
    after: str = ""  # id of the last document done ("" before the first)
    documents: int = 0  # documents done so far in this run
    chunks: int = 0  # chunks re-embedded so far in this run
    finished_at: str = ""

    @property
    def finished(self) -> bool:
        return bool(self.finished_at)

    def is_for(self, model: EmbeddingModel) -> bool:
        return (self.model_id, self.precision) == (model.model_id, model.precision)


class ProgressStore:
    """The current run's progress, one Redis hash."""

    def __init__(self, redis: Redis, key: str = PROGRESS_KEY) -> None:
        self._redis = redis
        self._key = key

    def load(self) -> ReindexRun | None:
        raw = self._redis.hgetall(self._key)
        if not isinstance(raw, dict) or not raw:
            return None
        fields = {
            (k.decode() if isinstance(k, bytes) else str(k)): (
                v.decode() if isinstance(v, bytes) else str(v)
            )
            for k, v in raw.items()
        }
        try:
            return ReindexRun(
                model_id=fields["model_id"],
                precision=fields["precision"],
                started_at=fields["started_at"],
                after=fields.get("after", ""),
                documents=int(fields.get("documents", "0")),
                chunks=int(fields.get("chunks", "0")),
                finished_at=fields.get("finished_at", ""),
            )
        except (KeyError, ValueError):
            return None  # unreadable: start afresh rather than guess

    def save(self, run: ReindexRun) -> None:
        self._redis.hset(self._key, mapping={k: str(v) for k, v in asdict(run).items()})


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def plan_run(previous: ReindexRun | None, model: EmbeddingModel, *, restart: bool) -> ReindexRun:
    """Resume the previous run if it was for this model and precision and did not finish;
    otherwise (or with `restart`) start from the first document."""
    if previous is not None and previous.is_for(model) and not restart:
        return previous
    return ReindexRun(model.model_id, model.precision, _now())


@dataclass(frozen=True, slots=True)
class StoredChunk:
    id: int
    document_id: str
    embed_text: str


def document_counts(sessions: sessionmaker[Session], after: str) -> tuple[int, int]:
    """(documents up to and including `after`, all documents)."""
    with sessions() as session:
        row = session.execute(
            text("SELECT count(*) FILTER (WHERE id <= :after), count(*) FROM documents"),
            {"after": after},
        ).one()
    return int(row[0]), int(row[1])


def _next_documents(session: Session, after: str, limit: int) -> list[str]:
    rows = session.execute(
        text("SELECT id FROM documents WHERE id > :after ORDER BY id LIMIT :limit"),
        {"after": after, "limit": limit},
    )
    return [str(r[0]) for r in rows]


def _chunks_of(session: Session, document_ids: Sequence[str]) -> list[StoredChunk]:
    rows = session.execute(
        text(
            "SELECT id, document_id, title, text FROM chunks "
            "WHERE document_id = ANY(CAST(:ids AS text[])) ORDER BY document_id, ordinal"
        ),
        {"ids": list(document_ids)},
    )
    # Exactly what the chunker gave the model: the fitted title, a newline, the body.
    return [
        StoredChunk(int(r[0]), str(r[1]), f"{r[2]}\n{r[3]}" if r[2] else str(r[3])) for r in rows
    ]


class Reindexer:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        embedder: ModelClient,  # pointed at the indexing model server
        progress: ProgressStore,
        documents_per_batch: int = 16,
        writer: ChunkWriter | None = None,  # default: PostgreSQL's
    ) -> None:
        self._sessions = sessions
        self._writer = writer or PostgresChunkWriter()
        self._embedder = embedder
        self._progress = progress
        self._documents_per_batch = documents_per_batch

    def run(
        self,
        run: ReindexRun,
        on_batch: Callable[[ReindexRun, int], None] = lambda _run, _documents: None,
    ) -> ReindexRun:
        """Re-embed every document after `run.after`, saving progress after each batch;
        `on_batch(run, documents in the batch)` reports it."""
        self._progress.save(run)
        while True:
            with self._sessions() as session:
                documents = _next_documents(session, run.after, self._documents_per_batch)
                chunks = _chunks_of(session, documents)
            if not documents:
                break
            vectors = self._embed(chunks)
            self._write(documents, chunks, vectors)
            run = replace(
                run,
                after=documents[-1],
                documents=run.documents + len(documents),
                chunks=run.chunks + len(chunks),
            )
            self._progress.save(run)
            on_batch(run, len(documents))
        run = replace(run, finished_at=_now())
        self._progress.save(run)
        return run

    def _embed(self, chunks: Sequence[StoredChunk]) -> FloatArray:
        if not chunks:
            return np.zeros((0, EMBEDDING_DIMENSIONS), dtype=np.float32)
        vectors = self._embedder.embed([c.embed_text for c in chunks], TextType.PASSAGE)
        if vectors.shape != (len(chunks), EMBEDDING_DIMENSIONS):
            raise ReindexError(
                f"the indexing server returned vectors of shape {vectors.shape}; the index "
                f"holds {EMBEDDING_DIMENSIONS} dimensions (a model of another size needs a "
                "new migration and a fresh ingest, not a reindex)"
            )
        return vectors

    def _write(
        self, documents: Sequence[str], chunks: Sequence[StoredChunk], vectors: FloatArray
    ) -> None:
        if not chunks:
            return
        for attempt in range(DEADLOCK_RETRIES):
            try:
                with self._sessions.begin() as session:
                    self._writer.replace_embeddings(
                        session, documents, {c.id: v for c, v in zip(chunks, vectors, strict=True)}
                    )
                return
            except OperationalError as exc:
                code = getattr(exc.orig, "sqlstate", None)
                if code != DEADLOCK or attempt == DEADLOCK_RETRIES - 1:
                    raise
                time.sleep(0.1 * (attempt + 1))  # back off before retrying the batch
