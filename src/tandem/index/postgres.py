"""The document index on PostgreSQL: chunks with pgvector embeddings and BM25 postings.

Writes in tandem.index.chunk_writes. Search (HNSW + BM25, fused) runs here in rounds, each
on connections of its own; the SQL of each side is tandem.index.retrieval's."""

from __future__ import annotations

import contextvars
from collections.abc import Collection, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import replace

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from tandem.db.models import Chunk
from tandem.db.statements import statement
from tandem.index import bm25, retrieval
from tandem.index.bm25 import Bm25Parameters
from tandem.index.chunk_writes import PostgresChunkWriter
from tandem.index.filters import ChunkFilter, FilterEstimates
from tandem.index.fusion import Candidate, Fusion, fuse
from tandem.index.pages import read_page
from tandem.index.protocol import ChunkWriter, IndexedChunk, IndexHit, IndexQuery, SearchMode
from tandem.index.retrieval import OPENING_WEIGHT, PendingVector, Pool
from tandem.index.stage_timings import Stage
from tandem.model_files import FloatArray

# A grouped page short of documents asks the retrievers again for GROWTH times as many
# candidates, up to MAX_CANDIDATES each (PostgresIndex.search).
GROWTH = 4
MAX_CANDIDATES = 5000
# Searches end their read-only transactions with COMMIT, which costs what ROLLBACK does:
# psycopg forgets a connection's prepared statements on every ROLLBACK (an object they
# name may have been dropped in it), so searches that roll back never reach its
# prepare threshold and PostgreSQL parses and plans every statement afresh.

# A round that lost its connection (the database restarted) runs again this many times.
DISCONNECT_RETRIES = 1
# Threads kept for each of a search's side tasks (the query's embedding, hybrid's keyword
# side): as many searches at once as the API's request threads, and starting a thread per
# search cost 0.3 ms of wall time and 0.15 ms of CPU each. An embedding never waits on
# the index, and a keyword side only on an embedding: a busy pool queues, never locks.
SIDE_THREADS = 40


def stored_vectors(
    session: Session, document_ids: Collection[str]
) -> dict[str, dict[tuple[str, str], FloatArray]]:
    """Each document's stored vectors by the (title, text) they embed: a changed document
    re-embeds only the chunks whose text is new."""
    if not document_ids:
        return {}
    found: dict[str, dict[tuple[str, str], FloatArray]] = {}
    rows = session.execute(
        select(Chunk.document_id, Chunk.title, Chunk.text, Chunk.embedding).where(
            Chunk.document_id.in_(sorted(document_ids))
        )
    )
    for document_id, title, body, embedding in rows:
        found.setdefault(document_id, {})[(title, body)] = np.asarray(embedding, np.float32)
    return found


class PostgresIndex:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        fusion: Fusion = Fusion.LINEAR,
        bm25_parameters: Bm25Parameters | None = None,
        opening_weight: float = OPENING_WEIGHT,
    ) -> None:
        self._sessions = sessions
        self._writer = PostgresChunkWriter()
        self._fusion = fusion
        self._parameters = bm25_parameters or Bm25Parameters()
        self._opening_weight = opening_weight
        self._estimates = FilterEstimates()  # lives as long as the index: the lifespan's
        # Idle threads end when the index is closed (or collected: the pools go with it).
        self._embedding = ThreadPoolExecutor(SIDE_THREADS, thread_name_prefix="query-embedding")
        self._keyword_side_threads = ThreadPoolExecutor(SIDE_THREADS, thread_name_prefix="bm25")

    def close(self) -> None:
        """Ends the index's threads (a search running meanwhile still finishes)."""
        self._embedding.shutdown(wait=False)
        self._keyword_side_threads.shutdown(wait=False)

    @property
    def writer(self) -> ChunkWriter:
        return self._writer

    def replace_document(self, document_id: str, chunks: Sequence[IndexedChunk]) -> None:
        with self._sessions.begin() as session:
            self._writer.replace_chunks(session, {document_id: chunks})

    def delete_document(self, document_id: str) -> int:
        with self._sessions.begin() as session:
            return self._writer.delete_documents(session, [document_id])

    def chunk_count(self, document_id: str | None = None) -> int:
        statement = select(func.count()).select_from(Chunk)
        if document_id is not None:
            statement = statement.where(Chunk.document_id == document_id)
        with self._sessions() as session:
            return int(session.execute(statement).scalar_one())

    def chunks(self, document_id: str) -> list[IndexHit]:
        statement = (
            select(
                Chunk.document_id, Chunk.ordinal, Chunk.title, Chunk.source, Chunk.path, Chunk.text
            )
            .where(Chunk.document_id == document_id)
            .order_by(Chunk.ordinal)
        )
        with self._sessions() as session:
            return [
                IndexHit(row[0], row[1], row[2], row[3], row[4], row[5], 0.0, None, None)
                for row in session.execute(statement)
            ]

    def search(self, query: IndexQuery) -> list[IndexHit]:
        """The page of the ranking at `query.offset`. Grouped by document, a pool of
        `candidates` per retriever may hold fewer documents than the page needs (one long
        document's chunks filling it): then the retrievers are asked again for GROWTH
        times as many, until the page is full, they run out, or MAX_CANDIDATES. Each round
        on connections of its own, none held in between (see `_hybrid`)."""
        if query.mode is SearchMode.KEYWORD or query.vector is not None or query.embed is None:
            return self._rounds(query, query.vector)
        # The query is embedded while the index connects (and with hybrid, starts on the
        # keywords): the vector is needed only for the HNSW scan.
        return self._rounds(query, self._embedding.submit(query.embed))

    def _rounds(
        self, query: IndexQuery, vector: FloatArray | PendingVector | None
    ) -> list[IndexHit]:
        chunk_filter = ChunkFilter.build(query.filters)
        candidates = query.candidates
        while True:
            asked = replace(query, candidates=candidates)
            pool, hits = self._round(asked, vector, chunk_filter)
            if len(hits) >= query.limit or not pool.full or candidates >= MAX_CANDIDATES:
                return hits
            candidates = min(MAX_CANDIDATES, candidates * GROWTH)
            vector = pool.vector  # resolved: not embedded again

    def _round(
        self,
        query: IndexQuery,
        vector: FloatArray | PendingVector | None,
        chunk_filter: ChunkFilter,
    ) -> tuple[Pool, list[IndexHit]]:
        """One round: the pool and its page. Search engines run without the pool's
        pre-ping (tandem.db.session.make_engine): a connection the database dropped fails
        here once, the pool discards it and its like, and the round runs again."""
        for attempt in range(DISCONNECT_RETRIES + 1):
            try:
                with self._sessions() as session:
                    pool = self._pool(session, query, vector, chunk_filter)
                    with query.timings.stage(Stage.PAGE):
                        hits = read_page(
                            session,
                            pool.ranked,
                            offset=query.offset,
                            limit=query.limit,
                            grouped=query.group_by_document,
                        )
                    session.commit()  # not a rollback: see the note on COMMIT above
                return pool, hits
            except DBAPIError as exc:
                if not exc.connection_invalidated or attempt == DISCONNECT_RETRIES:
                    raise
        raise AssertionError("the last attempt returns or raises")

    def _pool(
        self,
        session: Session,
        query: IndexQuery,
        pending: FloatArray | PendingVector | None,
        chunk_filter: ChunkFilter,
    ) -> Pool:
        if query.mode is SearchMode.HYBRID and pending is not None:
            return self._hybrid(session, query, pending, chunk_filter)
        timings = query.timings
        vector = None
        if query.mode is not SearchMode.KEYWORD and pending is not None:
            # Connected and set for HNSW while the query is still being embedded.
            retrieval.connect(session, query, hnsw=True)
            vector = retrieval.resolve(pending)
            if vector is None:  # embedding failed: BM25's plans, not the HNSW settings
                session.execute(statement(retrieval.RESET_HNSW_SETTINGS))
        else:
            retrieval.connect(session, query, hnsw=False)
        if vector is None:  # keyword mode, or no query vector: keyword only
            with timings.stage(Stage.BM25):
                scores = self._keyword(session, query, chunk_filter)
            with timings.stage(Stage.FUSION):
                ranked = retrieval.by_score(scores, keyword=True)
            return Pool(ranked, len(scores) >= query.candidates, None)
        with timings.stage(Stage.HNSW):
            weight = self._opening_weight
            scores, _ = retrieval.nearest(session, query, vector, chunk_filter, weight)
        with timings.stage(Stage.FUSION):
            ranked = retrieval.by_score(scores)
        return Pool(ranked, len(scores) >= query.candidates, vector)

    def _hybrid(
        self,
        session: Session,
        query: IndexQuery,
        pending: FloatArray | PendingVector,
        chunk_filter: ChunkFilter,
    ) -> Pool:
        """Two connections at once. On a second one: the query's terms, then the keyword
        top k and their semantic scores. On this one, once the query vector and the terms
        are there: the HNSW top k with their semantic and BM25 scores in one statement."""
        # Safe on a small pool: this connection is taken only after the keyword side has
        # read the terms on its own, which then finishes without waiting for anything.
        analysed: Future[bm25.PreparedQuery] = Future()
        vector_scores: dict[int, float] = {}
        vector_bm25: dict[int, float] = {}
        # In a copy of this thread's context: what the caller keeps there follows the
        # search onto its second connection (the replica router's read-your-writes
        # check, tandem.db.replicas).
        keyword = self._keyword_side_threads.submit(
            contextvars.copy_context().run,
            self._keyword_side,
            query,
            pending,
            chunk_filter,
            analysed,
        )
        try:
            # The terms first: then the keyword side holds its connection (see above).
            terms = analysed.result()
            retrieval.connect(session, query, hnsw=True)
            vector = retrieval.resolve(pending)
            if vector is not None:
                scorer = bm25.Bm25Scorer(session, terms, chunk_filter.sql, chunk_filter.params)
                with query.timings.stage(Stage.HNSW):
                    vector_scores, vector_bm25 = retrieval.nearest(
                        session, query, vector, chunk_filter, self._opening_weight, scorer
                    )
            else:  # the page is read here, with the planner's usual choices
                session.execute(statement(retrieval.RESET_HNSW_SETTINGS))
        finally:
            # Whatever happened here, the keyword side is done (or has failed) before
            # the round ends: it never outlives the search on a connection.
            wait([keyword])
        keyword_scores, keyword_semantic = keyword.result()
        # Either list as long as asked for: that retriever may have more.
        full = max(len(keyword_scores), len(vector_scores)) >= query.candidates
        with query.timings.stage(Stage.FUSION):
            if vector is None:  # the inference server could not embed the query
                return Pool(retrieval.by_score(keyword_scores, keyword=True), full, None)
            keyword_scores = vector_bm25 | keyword_scores
            vector_scores = keyword_semantic | vector_scores
            candidates = [
                Candidate(c, vector_scores.get(c), keyword_scores.get(c))
                for c in {**vector_scores, **keyword_scores}
            ]
            ranked = fuse(candidates, alpha=query.alpha, method=self._fusion)
        return Pool(ranked, full, vector)

    def _keyword_side(
        self,
        query: IndexQuery,
        pending: FloatArray | PendingVector,
        chunk_filter: ChunkFilter,
        analysed: Future[bm25.PreparedQuery],
    ) -> tuple[dict[int, float], dict[int, float]]:
        """On a connection of its own: (BM25 top k, their semantic scores: empty without
        a vector)."""
        with self._sessions() as session:
            with query.timings.stage(Stage.BM25):
                scores = self._keyword(session, query, chunk_filter, analysed)
            vector = retrieval.resolve(pending)
            semantic: dict[int, float] = {}
            if vector is not None:
                with query.timings.stage(Stage.COSINES):
                    semantic = retrieval.semantic_scores(
                        session, vector, [*scores], self._opening_weight
                    )
            session.commit()  # not a rollback: see the note on COMMIT above
            return scores, semantic

    def _keyword(
        self,
        session: Session,
        query: IndexQuery,
        chunk_filter: ChunkFilter,
        analysed: Future[bm25.PreparedQuery] | None = None,
    ) -> dict[int, float]:
        """The BM25 top k; `analysed` gets the query's terms as soon as they are read (or
        the error that prevented it)."""
        try:
            prepared = bm25.prepare(session, query.text, self._parameters)
        except BaseException as exc:  # re-raised: whoever waits must not wait forever
            if analysed is not None:
                analysed.set_exception(exc)
            raise
        if analysed is not None:
            analysed.set_result(prepared)
        scorer = bm25.Bm25Scorer(
            session, prepared, chunk_filter.sql, chunk_filter.params, estimates=self._estimates
        )
        return dict(scorer.top(query.candidates))
