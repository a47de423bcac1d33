"""Loading a prefix of the scale corpus into PostgreSQL with COPY, as ingest would store it.

Documents and chunks go in with COPY (the chunks' BM25 postings and term statistics are
written by the triggers of the migrations, as for ingested chunks); the HNSW index is
dropped before a load and rebuilt after it, as the migration defines it, with the GIN /
BM25 indexes kept (benchmarks/search_corpus.py's build_search_indexes).
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from pgvector.psycopg import register_vector

from benchmarks import real_scale_chunks as chunks_
from benchmarks import real_scale_vectors as vectors_
from benchmarks import search_corpus
from benchmarks.real_scale_chunks import Chunk

SOURCE = search_corpus.SOURCE
BATCH = 10_000
DONOR_CHUNKS = 100_000  # borrowed vectors are drawn from the real vectors among these


def donors(directory: Path, model: vectors_.ScaleEmbedder) -> vectors_.Matrix:
    """The real vectors among the first DONOR_CHUNKS chunks of the load order."""
    texts = [
        c.embed_text
        for _, chunks in chunks_.read_chunks(directory, DONOR_CHUNKS, partial=True)
        for c in chunks
    ]
    found = [v for v in model.cached(texts) if v is not None]
    if not found:
        raise SystemExit("no real vectors: run python -m benchmarks.real_scale_vectors first")
    return np.stack(found).astype(np.float32)


def _copy_batch(
    connection: psycopg.Connection[Any],
    documents: list[dict[str, Any]],
    chunks: list[Chunk],
    vectors: vectors_.Matrix,
    paths: dict[str, str],
) -> None:
    with connection.cursor() as cursor:
        if documents:
            with cursor.copy(
                "COPY documents (id, title, source, path, content_type, metadata,"
                " content_hash, size_bytes, chunk_count) FROM STDIN"
            ) as copy:
                for d in documents:
                    digest = hashlib.sha256(d["id"].encode()).hexdigest()
                    row = (d["id"], d["title"], SOURCE, d["source"], d["content_type"], "{}")
                    copy.write_row((*row, digest, 0, d["chunk_count"]))
        with cursor.copy(
            "COPY chunks (document_id, ordinal, title, source, path, content_type, metadata,"
            " text, token_count, embedding) FROM STDIN WITH (FORMAT BINARY)"
        ) as copy:
            copy.set_types(search_corpus.CHUNK_COLUMN_TYPES)
            for chunk, vector in zip(chunks, vectors, strict=True):
                path, kind = paths[chunk.document_id].split("\0")
                fields = (chunk.document_id, chunk.ordinal, chunk.title, SOURCE, path, kind)
                copy.write_row((*fields, {}, chunk.text, chunk.token_count, vector))
    connection.commit()


def load_range(
    connection: psycopg.Connection[Any],
    directory: Path,
    model: vectors_.ScaleEmbedder,
    donor_vectors: vectors_.Matrix,
    start: int,
    stop: int,
) -> dict[str, Any]:
    """COPY chunks start..stop-1 of the load order (and the documents they begin)."""
    register_vector(connection)
    started = time.perf_counter()
    position = real = 0
    documents: list[dict[str, Any]] = []
    batch: list[Chunk] = []
    paths: dict[str, str] = {}
    document_ids: set[str] = set()

    def flush() -> None:
        nonlocal real, documents, batch
        if not batch:
            return
        first = position - len(batch)
        vectors, found = vectors_.vectors_for(
            model, [c.embed_text for c in batch], first, donor_vectors
        )
        _copy_batch(connection, documents, batch, vectors, paths)
        real += found
        documents, batch = [], []

    for row, chunks in chunks_.read_chunks(directory, stop, partial=True):
        for chunk in chunks:
            position += 1
            if position <= start:
                continue
            if chunk.ordinal == 0:
                documents.append(row)
            paths[chunk.document_id] = f"{row['source']}\0{row['content_type']}"
            batch.append(chunk)
            document_ids.add(chunk.document_id)
            if len(batch) >= BATCH:
                flush()
    flush()
    loaded = position - start
    return {
        "chunks_loaded": loaded,
        "real_vectors": real,
        "borrowed_vectors": loaded - real,
        "copy_seconds": time.perf_counter() - started,
        "document_ids": document_ids,
    }
