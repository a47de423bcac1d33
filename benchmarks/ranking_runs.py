"""Tandem's side of the ranking-quality benchmark: chunk, embed, write, search.

Documents are chunked by the worker's Chunker and written the way the worker writes them
(catalog row, then `PostgresIndex.replace_document`; the chunk count is left at 0), into a
throwaway PostgreSQL with the project's migrations, so whatever the schema maintains on
write (statistics, triggers) is maintained here too. Queries go through
`tandem.search.Searcher` over `PostgresIndex`, as the API route sends them (a page of 10
hits unless a configuration asks for more; the searcher sizes the retrievers' pools from
it), with query vectors computed beforehand.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy.orm import Session, sessionmaker

from benchmarks.embedding_cache import CachedEmbedder, Matrix
from benchmarks.quality_set import LabelledDocument, LabelledQuery
from tandem.db import catalog, migrate
from tandem.db.session import make_engine, make_session_factory
from tandem.documents.parsed import ContentType, ParsedDocument
from tandem.index.fusion import Fusion
from tandem.index.postgres import PostgresIndex
from tandem.index.protocol import DEFAULT_HYBRID_ALPHA, IndexedChunk, SearchMode
from tandem.index.retrieval import OPENING_WEIGHT
from tandem.local.services.postgres import THROWAWAY_SETTINGS, running_postgres
from tandem.local.services.process import free_port
from tandem.search import Searcher, SearchQuery
from tandem.wire.model import TextType
from tandem.worker.chunking import Chunker, TextChunk


@dataclass(frozen=True)
class Configuration:
    name: str
    mode: SearchMode
    fusion: Fusion = Fusion.LINEAR  # only hybrid mode fuses
    alpha: float | None = None
    opening_weight: float = OPENING_WEIGHT  # keyword mode ignores it
    # Hits asked for: the API's default page (10) unless a comparison asks for more;
    # the pool each retriever fills grows with it (tandem.search.searcher.candidates).
    limit: int = 10
    # Whether this configuration competes for a default: the others differ by a
    # constant outside the settings (opening weight, page size), shown for comparison.
    candidate: bool = True

    def describe(self) -> dict[str, Any]:
        hybrid = self.mode is SearchMode.HYBRID
        return {
            "mode": self.mode.value,
            "fusion": self.fusion.value if hybrid else None,
            "alpha": self.alpha,
            "opening_weight": None if self.mode is SearchMode.KEYWORD else self.opening_weight,
            "limit": self.limit,
            "candidate": self.candidate,
        }


def configurations(
    alphas: dict[Fusion, tuple[float, ...]],
    opening_weights: tuple[float, ...] = (),
    limits: tuple[int, ...] = (),
) -> list[Configuration]:
    """Every mode at today's defaults, hybrid over `alphas` per fusion; then, for
    comparison, semantic and default-alpha linear hybrid at each of the other
    `opening_weights`, and default hybrid asking for each of `limits` hits."""
    found = [
        Configuration("keyword", SearchMode.KEYWORD),
        Configuration("semantic", SearchMode.SEMANTIC),
    ]
    for fusion, fusion_alphas in alphas.items():
        found += [
            Configuration(f"hybrid-{fusion.value}-{a}", SearchMode.HYBRID, fusion, a)
            for a in fusion_alphas
        ]
    found += [
        Configuration(
            f"hybrid-linear-{DEFAULT_HYBRID_ALPHA}-limit-{limit}",
            SearchMode.HYBRID,
            Fusion.LINEAR,
            DEFAULT_HYBRID_ALPHA,
            limit=limit,
            candidate=False,
        )
        for limit in limits
    ]
    for weight in opening_weights:
        if weight == OPENING_WEIGHT:
            continue
        found += [
            Configuration(
                f"semantic-opening-{weight}",
                SearchMode.SEMANTIC,
                opening_weight=weight,
                candidate=False,
            ),
            Configuration(
                f"hybrid-linear-{DEFAULT_HYBRID_ALPHA}-opening-{weight}",
                SearchMode.HYBRID,
                Fusion.LINEAR,
                DEFAULT_HYBRID_ALPHA,
                weight,
                candidate=False,
            ),
        ]
    return found


@dataclass(frozen=True)
class PreparedSet:
    name: str
    documents: list[LabelledDocument]
    queries: list[LabelledQuery]
    chunks: list[list[TextChunk]]  # per document
    chunk_texts: list[str]  # title + "\n" + body, every chunk in document order
    chunk_document: npt.NDArray[np.int64]  # chunk -> index of its document
    chunk_vectors: Matrix
    query_vectors: Matrix


def chunk_documents(
    name: str,
    documents: list[LabelledDocument],
    queries: list[LabelledQuery],
    chunker: Chunker,
    embedder: CachedEmbedder,
) -> PreparedSet:
    chunks = [
        chunker.chunk(ParsedDocument(d.title, d.text, d.source, ContentType.TEXT))
        for d in documents
    ]
    if any(not c for c in chunks):
        empty = [d.id for d, c in zip(documents, chunks, strict=True) if not c]
        raise RuntimeError(f"documents with no chunks: {empty[:5]}")
    flat = [c for per_document in chunks for c in per_document]
    owner = np.repeat(np.arange(len(documents)), [len(c) for c in chunks])
    return PreparedSet(
        name=name,
        documents=documents,
        queries=queries,
        chunks=chunks,
        chunk_texts=[c.embed_text for c in flat],
        chunk_document=owner.astype(np.int64),
        chunk_vectors=embedder.embed([c.embed_text for c in flat], f"{name} chunks"),
        query_vectors=embedder.embed([q.text for q in queries], f"{name} queries"),
    )


@contextmanager
def throwaway_database(work: Path) -> Iterator[sessionmaker[Session]]:
    """A migrated PostgreSQL in `work` (fsync off), stopped when the block exits."""
    with running_postgres(work / "postgres", free_port(), THROWAWAY_SETTINGS) as url:
        engine = make_engine(url, pool_size=2)
        try:
            migrate.upgrade(engine)
            yield make_session_factory(engine)
        finally:
            engine.dispose()


def ingest(sessions: sessionmaker[Session], prepared: PreparedSet) -> float:
    """Write every document as the worker does; returns the seconds it took."""
    started = time.perf_counter()
    index = PostgresIndex(sessions)
    offset = 0
    for document, chunks in zip(prepared.documents, prepared.chunks, strict=True):
        vectors = prepared.chunk_vectors[offset : offset + len(chunks)]
        offset += len(chunks)
        with sessions.begin() as session:
            catalog.upsert_document(
                session,
                catalog.DocumentInfo(
                    id=document.id,
                    title=document.title,
                    path=document.source,
                    content_type=ContentType.TEXT,
                    metadata={},
                    content_hash=hashlib.sha256(document.text.encode()).hexdigest(),
                    size_bytes=len(document.text.encode()),
                ),
            )
        index.replace_document(
            document.id,
            [
                IndexedChunk(
                    ordinal=c.ordinal,
                    text=c.text,
                    title=c.title,
                    path=c.path,
                    content_type=ContentType.TEXT,
                    token_count=c.token_count,
                    embedding=vector,
                )
                for c, vector in zip(chunks, vectors, strict=True)
            ],
        )
    with sessions.begin() as session:
        session.connection().exec_driver_sql("ANALYZE")
    return time.perf_counter() - started


class PrecomputedQueryVectors:
    """The inference client for the Searcher: query vectors embedded (and cached) before
    the run, so that search time is PostgreSQL's and the vectors are the references'."""

    def __init__(self, texts: list[str], vectors: Matrix) -> None:
        self._vectors = {t.strip(): v for t, v in zip(texts, vectors, strict=True)}

    def embed(self, texts: list[str], text_type: TextType) -> Matrix:
        return np.stack([self._vectors[t] for t in texts])

    def rerank(self, query: str, documents: list[str]) -> list[float]:
        raise RuntimeError("the ranking benchmark does not rerank")


def tandem_rankings(
    sessions: sessionmaker[Session],
    prepared: PreparedSet,
    configs: list[Configuration],
) -> Iterator[tuple[Configuration, list[list[str]]]]:
    """Each configuration's document rankings (its `limit` hits, one per document at its
    best chunk's rank), one per query, from `tandem.search.Searcher`, the library the API
    route calls."""
    texts = [q.text for q in prepared.queries]
    inference = PrecomputedQueryVectors(texts, prepared.query_vectors)
    longest = max(len(t) for t in texts)
    searchers = {
        (c.fusion, c.opening_weight): Searcher(
            PostgresIndex(sessions, c.fusion, opening_weight=c.opening_weight),
            inference,
            max_query_chars=longest,
        )
        for c in configs
    }
    for config in configs:
        rankings: list[list[str]] = []
        for text in texts:
            alpha = DEFAULT_HYBRID_ALPHA if config.alpha is None else config.alpha
            result = searchers[config.fusion, config.opening_weight].search(
                SearchQuery(text=text, mode=config.mode, limit=config.limit, alpha=alpha)
            )
            if result.degraded:
                raise RuntimeError(f"search was degraded: {text!r}")
            ranking: list[str] = []
            for hit in result.hits:
                if hit.document_id not in ranking:
                    ranking.append(hit.document_id)
            rankings.append(ranking)
        yield config, rankings
