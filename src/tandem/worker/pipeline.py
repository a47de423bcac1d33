"""Index one attempt item: parse -> chunk -> embed (indexing server) -> store.

Idempotent: the chunks of a document are replaced in one transaction, so running an item
twice (a redelivered task after a worker was killed) leaves exactly one copy.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, replace
from enum import StrEnum

from sqlalchemy.orm import Session, sessionmaker

from tandem.db import attempts, catalog
from tandem.index.protocol import DocumentIndex, IndexedChunk
from tandem.model_client import ModelClient, ModelServerError
from tandem.schemas import TextType
from tandem.worker.chunking import Chunker
from tandem.worker.document import EmptyDocument, ParseError
from tandem.worker.parsing import parse_document

log = logging.getLogger(__name__)


class Outcome(StrEnum):
    INDEXED = "indexed"
    FAILED = "failed"
    SKIPPED = "skipped"  # already finished: a duplicate delivery


@dataclass
class IndexingPipeline:
    sessions: sessionmaker[Session]
    index: DocumentIndex
    embedder: ModelClient  # pointed at the indexing model server, never the inference one
    chunker: Chunker

    def run(self, item_id: int) -> Outcome:
        """Raises ModelServerUnavailable when the indexing server is away (retry later)."""
        item = attempts.start_item(self.sessions, item_id)
        if item is None:
            return Outcome.SKIPPED
        try:
            parsed = parse_document(item.filename, item.payload, item.content_type)
            if item.title:
                parsed = replace(parsed, title=item.title)
            chunks = self.chunker.chunk(parsed)
            if not chunks:
                raise EmptyDocument(item.filename)
            vectors = self.embedder.embed([c.embed_text for c in chunks], TextType.PASSAGE)
        except ParseError as exc:
            return self._fail(item_id, str(exc))
        except ModelServerError as exc:
            # A 4xx from the model server will not heal by retrying.
            return self._fail(item_id, f"{item.filename}: embedding failed: {exc}")
        metadata = parsed.metadata | item.metadata
        with self.sessions.begin() as session:
            catalog.upsert_document(
                session,
                catalog.DocumentInfo(
                    id=item.document_id,
                    title=parsed.title,
                    source=parsed.source,
                    content_type=parsed.content_type,
                    metadata=metadata,
                    content_hash=hashlib.sha256(parsed.text.encode()).hexdigest(),
                    size_bytes=item.size_bytes,
                ),
            )
        self.index.replace_document(
            item.document_id,
            [
                IndexedChunk(
                    ordinal=c.ordinal,
                    text=c.text,
                    title=c.title,
                    source=c.source,
                    content_type=parsed.content_type,
                    token_count=c.token_count,
                    embedding=vector,
                    metadata=metadata,
                )
                for c, vector in zip(chunks, vectors, strict=True)
            ],
        )
        with self.sessions.begin() as session:
            catalog.set_chunk_count(session, item.document_id, len(chunks))
        attempts.finish_item(self.sessions, item_id, chunk_count=len(chunks))
        log.info(
            "item_indexed item=%d document=%s chunks=%d", item_id, item.document_id, len(chunks)
        )
        return Outcome.INDEXED

    def _fail(self, item_id: int, error: str) -> Outcome:
        attempts.finish_item(self.sessions, item_id, error=error)
        log.info("item_failed item=%d error=%s", item_id, error)
        return Outcome.FAILED
