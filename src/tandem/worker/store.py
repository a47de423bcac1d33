"""Write embedded documents: catalog rows, chunks and item outcomes in one transaction.

Fenced by the claims: only items this claim still holds are written, so a worker whose
lease was taken over writes nothing, and a document's chunks exist exactly once whatever
was killed or delivered twice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field

from sqlalchemy.orm import Session, sessionmaker

from tandem.db import catalog
from tandem.documents.parsed import ParsedDocument
from tandem.index.chunk_writes import PostgresChunkWriter
from tandem.index.protocol import ChunkWriter, IndexedChunk
from tandem.model_files import FloatArray
from tandem.work_queue import claims
from tandem.worker.chunking import TextChunk


@dataclass
class PreparedDocument:
    """A claimed item, parsed and chunked; vectors arrive request by request (or are the
    stored ones of chunks whose text did not change)."""

    item: claims.ClaimedItem
    parsed: ParsedDocument
    chunks: list[TextChunk]
    content_hash: str
    existed: bool  # a document of this id was indexed before: this updates it
    vectors: list[FloatArray | None] = field(default_factory=list)
    reused: int = 0  # chunks whose stored vector was kept

    def __post_init__(self) -> None:
        if not self.vectors:
            self.vectors = [None] * len(self.chunks)

    @property
    def embedded(self) -> bool:
        return all(v is not None for v in self.vectors)

    @property
    def metadata(self) -> dict[str, object]:
        return self.parsed.metadata | self.item.metadata

    def info(self) -> catalog.DocumentInfo:
        return catalog.DocumentInfo(
            id=self.item.document_id,
            title=self.parsed.title,
            source=self.item.source,
            path=self.parsed.path,
            content_type=self.parsed.content_type,
            metadata=self.metadata,
            content_hash=self.content_hash,
            size_bytes=self.item.size_bytes,
            chunk_count=len(self.chunks),
            readers=self.item.readers,
            owner_id=self.item.owner_id,
        )

    def outcome(self) -> claims.Outcome:
        return claims.Outcome(
            self.item,
            chunk_count=len(self.chunks),
            outcome="updated" if self.existed else "added",
            embedded=len(self.chunks) - self.reused,
        )

    def indexed_chunks(self) -> list[IndexedChunk]:
        metadata = self.metadata
        return [
            IndexedChunk(
                ordinal=c.ordinal,
                text=c.text,
                title=c.title,
                path=c.path,
                content_type=self.parsed.content_type,
                token_count=c.token_count,
                embedding=vector,
                metadata=metadata,
                source=self.item.source,
                readers=self.item.readers,
            )
            for c, vector in zip(self.chunks, self.vectors, strict=True)
            if vector is not None
        ]


def write_documents(
    sessions: sessionmaker[Session],
    documents: Sequence[PreparedDocument],
    outcomes: Sequence[claims.Outcome],
    before_commit: Callable[[Sequence[int]], None],
    timed: Callable[[str], AbstractContextManager[None]] = lambda _: nullcontext(),
    writer: ChunkWriter | None = None,
) -> set[int]:
    """Store `documents` (fully embedded) and record `outcomes` (failed or unchanged
    items), in one transaction. Returns the ids of the items written; the others were no
    longer this claim's. `timed(part)` times the chunk statements ("chunks": COPY, BM25
    triggers, HNSW inserts) and the commit ("commit") apart from the rest. The chunks go
    through the index's `writer` (default: PostgreSQL's)."""
    chunk_writer = writer or PostgresChunkWriter()
    items = [d.item for d in documents] + [o.item for o in outcomes]
    with sessions() as session:
        owned = claims.lock_owned(session, items)
        mine = sorted(
            (d for d in documents if d.item.id in owned), key=lambda d: d.item.document_id
        )
        upserted = catalog.upsert_documents(session, [d.info() for d in mine])
        taken = [d for d in mine if d.item.document_id not in upserted.written]
        stored = [d for d in mine if d.item.document_id in upserted.written]
        claims.record_outcomes(
            session,
            [d.outcome() for d in stored]
            + [
                claims.Outcome(
                    d.item,
                    error=f"{d.item.filename}: the id {d.item.document_id!r} is another "
                    "source's document",
                )
                for d in taken
            ]
            + [o for o in outcomes if o.item.id in owned],
        )
        # Last before the commit: the chunk statements take the BM25 statistics lock,
        # which every writer shares until its commit.
        with timed("chunks"):
            chunk_writer.replace_chunks(
                session, {d.item.document_id: d.indexed_chunks() for d in stored}, upserted.existed
            )
        readers = {
            o.item.document_id: o.readers
            for o in outcomes
            if o.readers is not None and o.item.id in owned
        }
        catalog.set_readers(session, readers)
        chunk_writer.set_document_readers(session, readers)
        before_commit(sorted(owned))
        # An error above leaves the block uncommitted: closing the session rolls it back.
        with timed("commit"):
            session.commit()
    return owned
