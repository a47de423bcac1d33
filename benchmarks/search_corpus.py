"""A large, realistic chunk table for the search-latency benchmark, loaded with COPY.

Cheap but realistic vectors: a pool of generated sentences per topic (benchmarks.prose) is
embedded for real, in this process, with the prepared model. A chunk is 6-10 sentences of
one topic, drawn at random from that topic's pool; its text is those sentences. Its vector
starts as the normalized mean of their embeddings; a mean of unit vectors leans towards
the pool's centroid (chunks look more alike than real ones), so CENTROID_SHARE of the
centroid is taken off and a little Gaussian noise (NOISE) added before normalizing again.
With these two constants the mean pairwise cosine (about 0.3) and the mean cosine to the
nearest neighbour (about 0.67) match real embeddings of generated chunks, and each vector
keeps a cosine of about 0.75 with the real embedding of its own text (`vector_realism`
measures all three in every run). Chunks of one topic cluster as real ones do, and no two
chunks share a vector. Each document holds CHUNKS_PER_DOCUMENT chunks of one topic.
"""

from __future__ import annotations

import hashlib
import random
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg
from pgvector.psycopg import register_vector

from benchmarks.prose import ProseModel
from tandem.config import ModelCacheSettings
from tandem.model_files import ModelKind, locate_prepared
from tandem.model_server.onnx_model import load_model

CHUNKS_PER_DOCUMENT = 5
SENTENCES_PER_CHUNK = (6, 10)
EMBED_BATCH = 64
CENTROID_SHARE = 0.4
NOISE = 0.3
INDEX_DDL = {
    # The same definition as migration 0001 (pgvector defaults: m=16, ef_construction=64).
    # BM25 postings are written by the chunks triggers (migration 0002) during the COPY.
    "ix_chunks_embedding_hnsw": "CREATE INDEX ix_chunks_embedding_hnsw ON chunks "
    "USING hnsw (embedding vector_cosine_ops)",
}
CHUNK_COLUMN_TYPES = [
    *("text", "int4", "text", "text", "text", "text", "jsonb", "text", "int4", "vector")
]
SOURCE = "upload"  # the built-in source (migration 0004): no sources row to add
Matrix = npt.NDArray[np.float32]


@dataclass
class SentencePool:
    topics: list[str]
    sentences: list[list[str]]  # per topic
    vectors: list[Matrix]  # per topic, normalized, one row per sentence
    tokens: list[list[int]]  # per topic: tokens per sentence, special tokens included
    embed_seconds: float

    def centroid(self) -> Matrix:
        vector: Matrix = np.concatenate(self.vectors).mean(axis=0)
        return vector


def embed_texts(texts: list[str], threads: int) -> tuple[Matrix, list[int]]:
    """Normalized embeddings with the prepared model in this process, and token counts."""
    settings = ModelCacheSettings()
    directory, manifest = locate_prepared(
        settings.model_cache, settings.embedding_model, ModelKind.BI_ENCODER
    )
    model = load_model(directory, manifest, threads, spinning=False)
    items = model.tokenize(texts, manifest.max_seq_length)
    order = sorted(range(len(items)), key=lambda i: len(items[i]))  # little padding
    vectors = np.zeros((len(texts), 0), dtype=np.float32)
    for start in range(0, len(order), EMBED_BATCH):
        rows = order[start : start + EMBED_BATCH]
        output = model.run([items[i] for i in rows])
        if vectors.shape[1] == 0:
            vectors = np.zeros((len(texts), output.shape[1]), dtype=np.float32)
        vectors[rows] = output
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors, [len(item) for item in items]


def sentence_pool(topics: int, per_topic: int, seed: int, threads: int) -> SentencePool:
    model = ProseModel.from_installed()
    rng = random.Random(seed)
    chosen = rng.sample(range(len(model.topics)), min(topics, len(model.topics)))
    sentences = [model.sentences(rng, topic, per_topic) for topic in chosen]
    started = time.perf_counter()
    flat_vectors, flat_tokens = embed_texts([s for group in sentences for s in group], threads)
    seconds = time.perf_counter() - started
    vectors = [flat_vectors[i * per_topic : (i + 1) * per_topic] for i in range(len(chosen))]
    tokens = [flat_tokens[i * per_topic : (i + 1) * per_topic] for i in range(len(chosen))]
    names = [model.topics[t] for t in chosen]
    return SentencePool(names, sentences, vectors, tokens, seconds)


@dataclass(frozen=True)
class SyntheticChunk:
    document_id: str
    ordinal: int
    title: str
    text: str
    token_count: int
    embedding: Matrix


def synthesize(
    pool: SentencePool, first_document: int, documents: int, seed: int
) -> list[SyntheticChunk]:
    """CHUNKS_PER_DOCUMENT chunks for each of `documents` documents, numbered from
    `first_document` (so a second call extends the same corpus)."""
    rng = random.Random(seed * 1_000_003 + first_document)
    noise = np.random.default_rng(seed * 1_000_003 + first_document)
    centroid = pool.centroid()
    chunks: list[SyntheticChunk] = []
    for number in range(first_document, first_document + documents):
        topic = rng.randrange(len(pool.topics))
        title = f"{pool.topics[topic]} notes {number}"
        for ordinal in range(CHUNKS_PER_DOCUMENT):
            count = rng.randint(*SENTENCES_PER_CHUNK)
            picks = rng.sample(range(len(pool.sentences[topic])), count)
            mean = pool.vectors[topic][picks].mean(axis=0)
            vector = mean / np.linalg.norm(mean) - CENTROID_SHARE * centroid
            vector = vector / np.linalg.norm(vector)
            vector += NOISE * noise.standard_normal(vector.shape[0]) / np.sqrt(vector.shape[0])
            chunks.append(
                SyntheticChunk(
                    document_id=f"doc-{number:06d}",
                    ordinal=ordinal,
                    title=title,
                    text=" ".join(pool.sentences[topic][i] for i in picks),
                    token_count=2 + sum(pool.tokens[topic][i] - 2 for i in picks),
                    embedding=vector / np.linalg.norm(vector),
                )
            )
    return chunks


def vector_realism(chunks: list[SyntheticChunk], threads: int) -> dict[str, float]:
    """The synthetic vectors of `chunks` against real embeddings of the same texts."""
    synthetic = np.stack([c.embedding for c in chunks])
    real, _ = embed_texts([c.text for c in chunks], threads)

    def spread(vectors: Matrix) -> tuple[float, float]:
        cosines = vectors @ vectors.T
        np.fill_diagonal(cosines, -1.0)
        pairs = cosines[np.triu_indices(len(vectors), 1)]
        return float(pairs.mean()), float(cosines.max(axis=1).mean())

    (synthetic_pairs, synthetic_nearest), (real_pairs, real_nearest) = (
        spread(synthetic),
        spread(real),
    )
    return {
        "chunks": len(chunks),
        "mean_cosine_to_real_embedding_of_own_text": float((synthetic * real).sum(axis=1).mean()),
        "synthetic_mean_pairwise_cosine": synthetic_pairs,
        "real_mean_pairwise_cosine": real_pairs,
        "synthetic_mean_nearest_neighbour_cosine": synthetic_nearest,
        "real_mean_nearest_neighbour_cosine": real_nearest,
    }


def conninfo(database_url: str) -> str:
    """A psycopg conninfo from the SQLAlchemy URL the servers use."""
    return database_url.replace("postgresql+psycopg://", "postgresql://", 1)


def drop_search_indexes(connection: psycopg.Connection[Any]) -> None:
    for name in INDEX_DDL:
        connection.execute(f"DROP INDEX IF EXISTS {name}")


def copy_chunks(connection: psycopg.Connection[Any], chunks: list[SyntheticChunk]) -> float:
    """COPY the chunks (and their documents) in; returns the seconds it took."""
    register_vector(connection)
    started = time.perf_counter()
    first_chunks = [c for c in chunks if c.ordinal == 0]
    with connection.cursor() as cursor:
        with cursor.copy(
            "COPY documents (id, title, source, path, content_type, metadata, content_hash,"
            " size_bytes, chunk_count) FROM STDIN"
        ) as copy:
            for chunk in first_chunks:
                digest = hashlib.sha256(chunk.document_id.encode()).hexdigest()
                row = (chunk.document_id, chunk.title, SOURCE, f"{chunk.document_id}.md")
                copy.write_row((*row, "text/markdown", "{}", digest, 0, CHUNKS_PER_DOCUMENT))
        with cursor.copy(
            "COPY chunks (document_id, ordinal, title, source, path, content_type, metadata,"
            " text, token_count, embedding) FROM STDIN WITH (FORMAT BINARY)"
        ) as copy:
            copy.set_types(CHUNK_COLUMN_TYPES)
            for c in chunks:
                path = f"{c.document_id}.md"
                fields = (c.document_id, c.ordinal, c.title, SOURCE, path, "text/markdown")
                copy.write_row((*fields, {}, c.text, c.token_count, c.embedding))
    connection.commit()
    return time.perf_counter() - started


def build_search_indexes(connection: psycopg.Connection[Any]) -> dict[str, float]:
    """Create the HNSW and GIN indexes (as the migration defines them); seconds per index."""
    seconds: dict[str, float] = {}
    connection.execute("SET maintenance_work_mem = '1GB'")
    for name, ddl in INDEX_DDL.items():
        started = time.perf_counter()
        connection.execute(ddl)
        connection.commit()
        seconds[name] = time.perf_counter() - started
    connection.commit()
    vacuum_for_search(connection)
    return seconds


VACUUMED_TABLES = ("chunks", "documents", "bm25_postings", "bm25_terms")


def vacuum_for_search(
    connection: psycopg.Connection[Any], tables: tuple[str, ...] = VACUUMED_TABLES
) -> dict[str, float]:
    """What autovacuum does on a live system to `tables`: statistics, and the visibility
    map that lets BM25 read postings from their index alone. {table: share of its pages
    all-visible}.

    The benchmarks' servers run with synchronous_commit off, and VACUUM cannot mark a page
    all-visible while the commit of its rows may still be unflushed: right after a load it
    marked none (and every posting then cost a table page, as on no live system). So the
    statistics come first, committed synchronously (ANALYZE writes them): that flushes the
    WAL up to them, the load's commits included. A commit that writes no WAL (one that
    only takes a transaction id) would not have waited for the flush."""
    connection.autocommit = True
    try:
        connection.execute("SET synchronous_commit = on")
        for table in tables:
            connection.execute(f"ANALYZE {table}")
        for table in tables:
            connection.execute(f"VACUUM {table}")
        connection.execute("RESET synchronous_commit")
        rows = connection.execute(
            "SELECT relname, relallvisible::float8 / greatest(relpages, 1) FROM pg_class"
            " WHERE relname = ANY(%s)",
            [list(tables)],
        ).fetchall()
    finally:
        connection.autocommit = False
    return {str(name): float(share) for name, share in rows}
