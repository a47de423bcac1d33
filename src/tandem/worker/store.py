"""Write embedded documents: catalogue rows, chunks and item outcomes in one transaction.

Fenced by the claims: only items this claim still holds are written, so a worker whose
lease was taken over writes nothing, and a document's chunks exist exactly once whatever
was killed or delivered twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sqlalchemy.orm import Session, sessionmaker

from tandem.db import catalog, claims
from tandem.documents import ParsedDocument
from tandem.index.postgres import replace_chunks
from tandem.index.protocol import IndexedChunk
from tandem.model_files import FloatArray
from tandem.worker.chunking import TextChunk


@dataclass
class PreparedDocument:
    """A claimed item, parsed and chunked; vectors arrive request by request."""

    item: claims.WorkItem
    parsed: ParsedDocument
    chunks: list[TextChunk]
    vectors: list[FloatArray] = field(default_factory=list)

    @property
    def embedded(self) -> bool:
        return len(self.vectors) == len(self.chunks)

    @property
    def metadata(self) -> dict[str, object]:
        return self.parsed.metadata | self.item.metadata

    def info(self) -> catalog.DocumentInfo:
        return catalog.DocumentInfo(
            id=self.item.document_id,
            title=self.parsed.title,
            source=self.parsed.source,
            content_type=self.parsed.content_type,
            metadata=self.metadata,
            content_hash=hashlib.sha256(self.parsed.text.encode()).hexdigest(),
            size_bytes=self.item.size_bytes,
            chunk_count=len(self.chunks),
        )

    def indexed_chunks(self) -> list[IndexedChunk]:
        metadata = self.metadata
        return [
            IndexedChunk(
                ordinal=c.ordinal,
                text=c.text,
                title=c.title,
                source=c.source,
                content_type=self.parsed.content_type,
                token_count=c.token_count,
                embedding=vector,
                metadata=metadata,
            )
            for c, vector in zip(self.chunks, self.vectors, strict=True)
        ]


def write_documents(
    sessions: sessionmaker[Session],
    documents: Sequence[PreparedDocument],
    failures: Sequence[claims.Outcome],
    before_commit: Callable[[Sequence[int]], None],
) -> set[int]:
    """Store `documents` (fully embedded) and record `failures`, in one transaction.
    Returns the ids of the items written; the others were no longer this claim's."""
    items = [d.item for d in documents] + [f.item for f in failures]
    with sessions.begin() as session:
        owned = claims.lock_owned(session, items)
        mine = sorted(
            (d for d in documents if d.item.id in owned), key=lambda d: d.item.document_id
        )
        existing = catalog.upsert_documents(session, [d.info() for d in mine])
        claims.record_outcomes(
            session,
            [claims.Outcome(d.item, chunk_count=len(d.chunks)) for d in mine]
            + [f for f in failures if f.item.id in owned],
        )
        # Last before the commit: the chunk statements take the BM25 statistics lock,
        # which every writer shares until its commit.
        replace_chunks(session, {d.item.document_id: d.indexed_chunks() for d in mine}, existing)
        before_commit(sorted(owned))
    return owned
