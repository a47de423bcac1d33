"""Index a claimed batch of items: parse -> chunk -> embed (indexing server) -> store.

Short documents share embedding requests: a batch's passages go to the indexing server in
requests of up to `embedder.batch_size`, across document boundaries, and the documents a
request completes are written together in one transaction (catalog rows, chunks by
COPY, item outcomes). A document's chunks are replaced as a whole under the claim's fence,
so a batch killed anywhere and claimed again leaves exactly one copy of each chunk.

Nothing is embedded twice without cause: an item whose content hash (its bytes, declared
type, title and metadata, and what decides its chunks) equals its document's is
`unchanged` and costs one lookup; a changed document keeps the stored vectors of every
chunk whose text it still has, and embeds only the others.

Every claimed item ends somewhere: indexed, failed with a message meant for the uploader,
released to wait for the indexing server, or (an unexpected error) released for a bounded
number of retries with backoff, after which the claim gives it up with the last error.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Literal

import orjson
from sqlalchemy.orm import Session, sessionmaker

from tandem.db import attempts, catalog
from tandem.documents.parsed import EmptyDocument, ParseError
from tandem.index.postgres import stored_vectors
from tandem.model_client.client import ModelClient, ModelServerError, ModelServerUnavailable
from tandem.model_files import FloatArray
from tandem.wire.model import TextType
from tandem.work_queue import claims
from tandem.worker.chunking import Chunker
from tandem.worker.held import HeldItems
from tandem.worker.parsing import PARSER_VERSION, DocumentParser, InProcessParser
from tandem.worker.stages import BatchTimings, NoObserver, Stage, StageObserver
from tandem.worker.store import PreparedDocument, write_documents

log = logging.getLogger(__name__)

UNAVAILABLE_RETRY_SECONDS = 5.0
DEFAULT_MAX_HOLD_SECONDS = 900.0
MAX_RETRY_SECONDS = 300.0


def content_hash(item: claims.ClaimedItem, chunker: str) -> str:
    """What an item's document is made from; equal hashes, equal chunks and vectors."""
    digest = hashlib.sha256()
    for part in (
        f"{PARSER_VERSION}/{chunker}".encode(),
        (item.content_type or "").encode(),
        (item.title or "").encode(),
        orjson.dumps(item.metadata, option=orjson.OPT_SORT_KEYS),
    ):
        digest.update(len(part).to_bytes(8, "big") + part)
    digest.update(item.payload)
    return digest.hexdigest()


class EmbeddingMismatch(ModelServerError):
    """The indexing server answered vectors the index cannot store (another model)."""


@dataclass
class _Progress:
    """What a batch still holds, and which items an error would be blamed on."""

    unfinished: dict[int, claims.ClaimedItem]
    suspects: list[claims.ClaimedItem] = field(default_factory=list)

    def done(self, item_ids: Sequence[int]) -> None:
        for item_id in item_ids:
            self.unfinished.pop(item_id, None)


@dataclass
class IndexingPipeline:
    sessions: sessionmaker[Session]
    embedder: ModelClient  # pointed at the indexing model server, never the inference one
    chunker: Chunker
    limits: claims.ClaimLimits
    dimensions: int  # what the index's vector column holds
    retry_base_seconds: float = 5.0
    observer: StageObserver = field(default_factory=NoObserver)
    # What the heartbeat extends; shared with it (tandem.worker.sweep.heartbeat).
    held: HeldItems = field(default_factory=lambda: HeldItems(DEFAULT_MAX_HOLD_SECONDS))
    # Where documents are parsed: the worker passes a sandboxed pool of child processes.
    parser: DocumentParser = field(default_factory=InProcessParser)

    def run_batch(
        self,
        origin: str,
        redelivered: bool = False,
        on_claimed: Callable[[int], None] | None = None,
    ) -> BatchTimings:
        """Claim and index one batch. `on_claimed(n)` runs right after a claim of n items
        (the queue uses it to let another thread claim the next batch meanwhile)."""
        timings = BatchTimings(origin=origin, redelivered=redelivered, started=time.time())
        with timings.timed("claim"):
            items = claims.claim_items(self.sessions, self.limits)
        timings.items = len(items)
        if items:
            ids = [i.id for i in items]
            log.info(
                "batch_claimed origin=%s redelivered=%s items=%s",
                origin,
                redelivered,
                ",".join(map(str, ids)),
            )
            self.held.add(ids)
            try:
                progress = _Progress({i.id: i for i in items})
                with self._release_on_error(progress):
                    if on_claimed is not None:
                        on_claimed(len(items))
                    self.observer.reached(Stage.CLAIMED, ids)
                    self._index(items, progress, timings)
            finally:
                self.held.discard(ids)
        timings.ended = time.time()
        self.observer.batch_done(timings)
        return timings

    def _index(
        self, items: list[claims.ClaimedItem], progress: _Progress, timings: BatchTimings
    ) -> None:
        documents, failures = self._prepare(items, progress, timings)
        self.observer.reached(Stage.PREPARED, [d.item.id for d in documents])
        passages = [
            (d, i, c.embed_text)
            for d in documents
            for i, c in enumerate(d.chunks)
            if d.vectors[i] is None
        ]
        timings.passages = len(passages)
        # Documents whose every chunk kept its vector, and the items that end here (failed
        # or unchanged), are written before any embedding request.
        ready = [d for d in documents if d.embedded]
        if ready or failures:
            self._write(timings, progress, ready, failures)
            failures = []
        failed: set[int] = set()
        step = self.embedder.batch_size
        for start in range(0, len(passages), step):
            part = [p for p in passages[start : start + step] if p[0].item.id not in failed]
            group = list({d.item.id: d for d, _, _ in part}.values())
            progress.suspects = [d.item for d in group]
            try:
                self._embed(part, timings)
            except ModelServerUnavailable as exc:
                self._write(timings, progress, [], failures)
                self._wait_for_server(progress, exc)
                timings.released = len(items) - timings.indexed - timings.failed - timings.unchanged
                return
            except ModelServerError as exc:
                # A 4xx will not heal by retrying: these documents fail, the rest go on.
                failed |= {d.item.id for d in group}
                failures += [
                    claims.Outcome(d.item, error=f"{d.item.filename}: embedding failed: {exc}")
                    for d in group
                ]
                continue
            self._write(timings, progress, [d for d in group if d.embedded], failures)
            failures = []
        self._write(timings, progress, [], failures)
        progress.suspects = []
        attempt_ids = {i.attempt_id for i in items}
        with timings.timed("finish_attempts"):
            attempts.finish_attempts(self.sessions, attempt_ids)
        self.observer.reached(Stage.FINISHED, [i.id for i in items])

    def _prepare(
        self, items: list[claims.ClaimedItem], progress: _Progress, timings: BatchTimings
    ) -> tuple[list[PreparedDocument], list[claims.Outcome]]:
        """Parse and chunk what changed; (the documents to embed, the items that end here:
        failed, or unchanged)."""
        failures: list[claims.Outcome] = []
        with timings.timed("hash"):
            digests = [content_hash(item, self.chunker.fingerprint) for item in items]
        changed: list[tuple[claims.ClaimedItem, str, bool]] = []
        # One session, closed before any parse: what is indexed, and the stored vectors of
        # the documents that changed (their chunks whose text stays keep them).
        with timings.timed("lookup"), self.sessions() as session:
            known = catalog.indexed(session, [i.document_id for i in items])
            for item, digest in zip(items, digests, strict=True):
                before = known.get(item.document_id)
                if before is None or before.content_hash != digest:
                    changed.append((item, digest, before is not None))
                    continue
                readers = item.readers if item.readers != before.readers else None
                failures.append(
                    claims.Outcome(
                        item, chunk_count=before.chunk_count, outcome="unchanged", readers=readers
                    )
                )
            updated = [item.document_id for item, _, existed in changed if existed]
            stored = stored_vectors(session, updated)
        documents: list[PreparedDocument] = []
        for item, digest, existed in changed:
            progress.suspects = [item]
            try:
                with timings.timed("parse"):
                    parsed = self.parser.parse(item.filename, item.payload, item.content_type)
                if item.title:
                    parsed = replace(parsed, title=item.title)
                with timings.timed("chunk"):
                    chunks = self.chunker.chunk(parsed)
                if not chunks:
                    raise EmptyDocument(item.filename)
            except ParseError as exc:
                failures.append(claims.Outcome(item, error=str(exc)))
                continue
            document = PreparedDocument(item, parsed, chunks, digest, existed)
            _reuse_vectors(document, stored.get(item.document_id, {}))
            documents.append(document)
        return documents, failures

    def _embed(self, part: list[tuple[PreparedDocument, int, str]], timings: BatchTimings) -> None:
        if not part:
            return
        started, cpu = time.time(), time.thread_time()
        vectors = self.embedder.embed([text for _, _, text in part], TextType.PASSAGE)
        ended = time.time()
        timings.add("embed", ended - started, time.thread_time() - cpu)
        timings.embed_intervals.append((started, ended))
        if vectors.ndim != 2 or vectors.shape[1] != self.dimensions:
            raise EmbeddingMismatch(
                f"the indexing server returned vectors of shape {vectors.shape}; the index "
                f"stores {self.dimensions} dimensions (is it serving another model?)"
            )
        for (document, index, _), vector in zip(part, vectors, strict=True):
            document.vectors[index] = vector
        self.observer.reached(Stage.EMBEDDED, sorted({d.item.id for d, _, _ in part}))

    def _write(
        self,
        timings: BatchTimings,
        progress: _Progress,
        documents: list[PreparedDocument],
        failures: list[claims.Outcome],
    ) -> None:
        if not documents and not failures:
            return
        with timings.timed("store"):
            written = write_documents(
                self.sessions,
                documents,
                failures,
                lambda ids: self.observer.reached(Stage.WRITTEN, ids),
                lambda part: timings.timed(f"store_{part}"),
            )
        lost = {d.item.id for d in documents} | {f.item.id for f in failures}
        lost -= written
        if lost:
            log.warning("lease_lost items=%s (taken over by another claim)", sorted(lost))
        timings.indexed += sum(d.item.id in written for d in documents)
        timings.failed += sum(f.item.id in written for f in failures if f.error)
        timings.unchanged += sum(f.item.id in written for f in failures if not f.error)
        for failure in failures:
            if failure.error:
                log.info("item_failed item=%d error=%s", failure.item.id, failure.error)
        progress.done(sorted(written | lost))
        self.observer.reached(Stage.COMMITTED, sorted(written))

    def _wait_for_server(self, progress: _Progress, exc: ModelServerUnavailable) -> None:
        delay = exc.retry_after or UNAVAILABLE_RETRY_SECONDS
        log.warning(
            "indexing_server_unavailable items=%d retry_in=%.1fs error=%s",
            len(progress.unfinished),
            delay,
            exc,
        )
        claims.release(
            self.sessions,
            progress.unfinished.values(),
            error=f"waiting to retry: {exc}",
            delay_seconds=delay,
            count_failure=False,
        )
        progress.done(list(progress.unfinished))

    def _release_on_error(self, progress: _Progress) -> _ReleaseOnError:
        return _ReleaseOnError(self, progress)


def _reuse_vectors(document: PreparedDocument, stored: dict[tuple[str, str], FloatArray]) -> None:
    """Chunks whose title and text the document had before keep their stored vectors."""
    for i, chunk in enumerate(document.chunks):
        vector = stored.get((chunk.title, chunk.text))
        if vector is not None:
            document.vectors[i] = vector
            document.reused += 1


class _ReleaseOnError:
    """Leaves no item `running` after an unexpected error, without swallowing it (the task
    fails and Celery logs the traceback): the suspects are released for a retry with
    backoff, counted towards their failure limit; the batch's other items are released
    untouched, due at once."""

    def __init__(self, pipeline: IndexingPipeline, progress: _Progress) -> None:
        self._pipeline = pipeline
        self._progress = progress

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> Literal[False]:
        if exc is None or not self._progress.unfinished:
            return False
        unfinished = self._progress.unfinished
        suspects = [i for i in self._progress.suspects if i.id in unfinished]
        innocent = [i for i in unfinished.values() if i not in suspects]
        sessions = self._pipeline.sessions
        if isinstance(exc, Exception):
            message = f"unexpected error: {type(exc).__name__}: {exc}"[:1000]
            failures = max((i.failures for i in suspects), default=0)
            delay = min(MAX_RETRY_SECONDS, self._pipeline.retry_base_seconds * 2**failures)
            claims.release(
                sessions, suspects, error=message, delay_seconds=delay, count_failure=True
            )
            log.error("batch_failed items=%s error=%s", [i.id for i in suspects], message)
        else:  # the worker is stopping: nobody is to blame
            innocent += suspects
        claims.release(sessions, innocent, error=None, delay_seconds=0, count_failure=False)
        return False
