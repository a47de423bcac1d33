"""The document index contract: what any engine (PostgreSQL now, Vespa later) provides.

One contract test suite (tests/test_index_contract.py) runs against every implementation.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.orm import Session

from tandem.index.stage_timings import StageTimings
from tandem.model_files import FloatArray
from tandem.search_mode import SearchMode as SearchMode

# Weight of the vector side in a hybrid blend. Onyx uses 0.5; on Tandem's labelled set
# (benchmarks/retrieval_quality.py) 0.7 matched semantic-only MRR@10 on paraphrased
# queries while keeping hybrid's gain on exact-term queries, so it is the default.
DEFAULT_HYBRID_ALPHA = 0.7


@dataclass(frozen=True, slots=True)
class IndexedChunk:
    """A chunk as the index stores it; its document's title, source, path and metadata
    travel with it."""

    ordinal: int
    text: str
    title: str
    path: str
    content_type: str
    token_count: int
    embedding: FloatArray
    metadata: dict[str, Any] = field(default_factory=dict)
    source: str = "upload"
    readers: tuple[str, ...] = ("public",)  # who may read it (tandem.db.principals)


@dataclass(frozen=True, slots=True)
class SearchFilters:
    """Every filter given narrows the results (they are ANDed); an empty one is no filter."""

    document_ids: Sequence[str] = ()
    sources: Sequence[str] = ()  # source names
    content_types: Sequence[str] = ()
    # Every key/value pair must be present in the chunk's metadata.
    metadata: dict[str, Any] = field(default_factory=dict)
    # Chunks whose path (inside its source) starts with this, literally: no wildcards.
    path_prefix: str = ""
    # Documents updated at or after this instant (timezone-aware).
    updated_since: datetime | None = None
    # Set by the server from the caller, never by a client: only chunks readable by one of
    # these reader tokens (tandem.db.principals); None reads everything (an admin).
    readers: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class IndexQuery:
    text: str
    # None: keyword only (the inference server is unavailable), unless `embed` is given.
    vector: FloatArray | None
    mode: SearchMode
    limit: int
    alpha: float = DEFAULT_HYBRID_ALPHA
    filters: SearchFilters = SearchFilters()
    candidates: int = 100  # per retriever, before fusion
    # One hit per document (its best chunk), or every chunk that ranks.
    group_by_document: bool = True
    # Hits skipped before the first one returned: the ranking's next page is at
    # offset + limit.
    offset: int = 0
    # Computes the query vector (None: the inference server could not embed it, then:
    # keyword only), for a query without `vector`: the index runs it while it connects and,
    # for hybrid, starts on the keywords.
    embed: Callable[[], FloatArray | None] | None = field(default=None, compare=False)
    # Where this search's time goes (the caller reads it; not part of the query).
    timings: StageTimings = field(default_factory=StageTimings, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class IndexHit:
    document_id: str
    ordinal: int
    title: str
    source: str
    path: str
    text: str
    score: float
    vector_score: float | None
    keyword_score: float | None


class DocumentIndex(Protocol):
    @property
    def writer(self) -> ChunkWriter:
        """The write side, for writes inside a caller's transaction."""
        ...

    def replace_document(self, document_id: str, chunks: Sequence[IndexedChunk]) -> None:
        """Make ``chunks`` the document's only chunks, atomically (old ones vanish)."""
        ...

    def delete_document(self, document_id: str) -> int:
        """Remove every chunk of the document; returns how many were removed."""
        ...

    def search(self, query: IndexQuery) -> list[IndexHit]:
        """The ranking's hits from `query.offset`, at most `query.limit`, best first,
        every filter applied. Grouped by document: each document once, as its best chunk
        (the chunk ranking's first of it), and `limit` documents whenever that many match
        however many chunks each has. Pages cut from one pool (the same `candidates`,
        none of them short of documents in it) follow on without overlap or gap."""
        ...

    def chunk_count(self, document_id: str | None = None) -> int: ...

    def chunks(self, document_id: str) -> list[IndexHit]:
        """A document's chunks in order (score fields unset)."""
        ...

    def close(self) -> None:
        """Ends what the index runs of its own (threads); its owner calls it last."""
        ...


class ChunkWriter(Protocol):
    """The write side of the index: the only code that writes chunks (and so the BM25
    statistics). Each method runs in the caller's session and transaction, so catalog
    rows and chunks commit or roll back together; none commits."""

    def replace_chunks(
        self,
        session: Session,
        documents: Mapping[str, Sequence[IndexedChunk]],
        existing: Collection[str] | None = None,
    ) -> None:
        """Make each document's chunks exactly `documents[id]`. `existing`: the ids that
        may have chunks already (None: any may); a new document's delete is skipped."""
        ...

    def delete_documents(self, session: Session, document_ids: Collection[str]) -> int:
        """Remove every chunk of the documents; returns how many were removed."""
        ...

    def set_document_readers(self, session: Session, readers: Mapping[str, Sequence[str]]) -> None:
        """New readers for each document's chunks (nothing re-embedded)."""
        ...

    def set_source_readers(self, session: Session, source: str, readers: Sequence[str]) -> None:
        """New readers for every chunk of a source's documents."""
        ...

    def replace_embeddings(
        self, session: Session, document_ids: Sequence[str], vectors: Mapping[int, FloatArray]
    ) -> int:
        """New vectors for chunks by chunk id (their documents: `document_ids`), text as it
        was; returns how many chunks changed."""
        ...
