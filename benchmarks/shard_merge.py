"""What sharding the index by document would cost in ranking: the labelled corpus (real
man/perl pages, known-item queries) split into S shards by a hash of the document id, as
Citus distributes a table on `document_id`.

* BM25 (k1 1.2, b 0.75, Lucene's idf; bm25s's tokenizer, English stemmer and stopwords),
  scored per shard with that shard's own N, avgdl and document frequencies, or with the
  global ones (what a two-phase query or a global statistics table gives), then the
  shards' top 10 merged by score: MRR@10 against the unsharded index.
* Dense: each shard a real pgvector HNSW index (m 16, ef_construction 64, as Tandem's
  migration), asked for its k' nearest (ef_search max(40, k')), merged by distance:
  recall@10 against the exact top 10 over every document, beside the unsharded HNSW
  index's own; the slowest shard's time (shards answer in parallel) + merge, beside the
  unsharded query's (one machine: the shards' queries run one after another here).

One vector per document (title + its first WORDS words), so a shard holds whole
documents, as it would. Writes benchmarks/results/shard_merge.json.

    python -m benchmarks.shard_merge [--documents N] [--queries N]
"""

from __future__ import annotations

import argparse
import hashlib
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import bm25s  # type: ignore[import-untyped]
import numpy as np
import numpy.typing as npt
import psycopg
import Stemmer  # type: ignore[import-not-found]
from scipy import sparse  # type: ignore[import-untyped]

from benchmarks import labelled_corpus
from benchmarks.embedding_cache import CachedEmbedder
from benchmarks.processes import unwind_on_sigterm
from benchmarks.results_io import write_result
from tandem.local.services.postgres import THROWAWAY_SETTINGS, running_postgres
from tandem.local.services.process import free_port

K1, B = 1.2, 0.75
TOP = 10
SHARDS = (1, 2, 4)
K_PRIMES = (10, 20, 40)
WORDS = 120
Matrix = npt.NDArray[np.float32]


def shard_of(document_id: str, shards: int) -> int:
    return int.from_bytes(hashlib.sha256(document_id.encode()).digest()[:4]) % shards


class TermCounts:
    """Documents x terms counts of one tokenized corpus."""

    def __init__(self, texts: list[str]) -> None:
        stemmer = Stemmer.Stemmer("english")
        tokens = bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False)
        self.vocab: dict[str, int] = tokens.vocab
        rows = [i for i, ids in enumerate(tokens.ids) for _ in ids]
        cols = [t for ids in tokens.ids for t in ids]
        counts = sparse.csr_matrix(
            (np.ones(len(cols), np.float32), (rows, cols)), shape=(len(texts), len(self.vocab))
        )
        counts.sum_duplicates()
        self.counts = counts
        self.lengths = np.asarray(counts.sum(axis=1)).ravel()
        self.stemmer = stemmer

    def query_terms(self, queries: list[str]) -> list[list[int]]:
        tokens = bm25s.tokenize(
            queries, stopwords="en", stemmer=self.stemmer, return_ids=False, show_progress=False
        )
        return [[self.vocab[w] for w in words if w in self.vocab] for words in tokens]


def bm25(counts: Any, lengths: Any, df: Any, n: int, avgdl: float, terms: list[int]) -> Matrix:
    """Scores of every row of `counts` for one query's `terms` under the given statistics."""
    scores = np.zeros(counts.shape[0], np.float32)
    norm = K1 * (1 - B + B * lengths / avgdl)
    for term in terms:
        tf = counts[:, term].toarray().ravel()
        idf = np.log(1 + (n - df[term] + 0.5) / (df[term] + 0.5))
        scores += (idf * tf / (tf + norm)).astype(np.float32)
    return scores


def mrr_at_10(rankings: list[list[int]], relevant: list[set[int]]) -> float:
    total = 0.0
    for ranking, wanted in zip(rankings, relevant, strict=True):
        for rank, doc in enumerate(ranking[:TOP], start=1):
            if doc in wanted:
                total += 1 / rank
                break
    return total / len(rankings)


def overlap(rankings: list[list[int]], reference: list[list[int]]) -> float:
    """Mean share of the unsharded top 10 that the merged top 10 holds too."""
    shares = [
        len(set(a[:TOP]) & set(b[:TOP])) / max(1, len(b[:TOP]))
        for a, b in zip(rankings, reference, strict=True)
    ]
    return round(float(np.mean(shares)), 4)


def bm25_runs(
    corpus: TermCounts, terms: list[list[int]], assignment: Any, shards: int
) -> dict[str, list[list[int]]]:
    """Per query, the merged top 10 under shard-local and under global statistics."""
    counts, lengths = corpus.counts, corpus.lengths
    global_df = np.asarray((counts > 0).sum(axis=0)).ravel()
    global_n, global_avgdl = counts.shape[0], float(lengths.mean())
    parts = []
    for shard in range(shards):
        rows = np.flatnonzero(assignment == shard)
        part = counts[rows]
        local_df = np.asarray((part > 0).sum(axis=0)).ravel()
        # Column slices (one per query term) are cheap in CSC.
        parts.append((rows, part.tocsc(), lengths[rows], local_df, float(lengths[rows].mean())))
    runs: dict[str, list[list[int]]] = {"local": [], "global": []}
    for query in terms:
        for mode in runs:
            candidates: list[tuple[float, int]] = []
            for rows, part, part_lengths, local_df, local_avgdl in parts:
                if mode == "local":
                    stats = (local_df, len(rows), local_avgdl)
                else:
                    stats = (global_df, global_n, global_avgdl)
                scores = bm25(part, part_lengths, *stats, query)
                best = np.argsort(-scores, kind="stable")[:TOP]
                candidates += [(float(scores[i]), int(rows[i])) for i in best if scores[i] > 0]
            candidates.sort(key=lambda c: (-c[0], c[1]))
            runs[mode].append([doc for _, doc in candidates[:TOP]])
    return runs


def dense_runs(
    url: str, vectors: Matrix, queries: Matrix, assignment: Any, exact: list[set[int]]
) -> dict[str, Any]:
    """Recall@10 and per-query latency of the unsharded and the sharded HNSW indexes."""
    conninfo = url.replace("postgresql+psycopg://", "postgresql://")
    results: dict[str, Any] = {}
    with psycopg.connect(conninfo, autocommit=True) as db:
        db.execute("CREATE EXTENSION IF NOT EXISTS vector")
        for shards in SHARDS:
            for shard in range(shards):
                table = f"s{shards}_{shard}"
                db.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, embedding vector(384))")
                rows = np.flatnonzero(assignment[shards] == shard)
                with db.cursor().copy(f"COPY {table} (id, embedding) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row((int(row), "[" + ",".join(map(str, vectors[row])) + "]"))
                db.execute(
                    f"CREATE INDEX ON {table} USING hnsw (embedding vector_cosine_ops) "
                    "WITH (m = 16, ef_construction = 64)"
                )
                db.execute(f"ANALYZE {table}")
        for shards in SHARDS:
            for k_prime in K_PRIMES if shards > 1 else (TOP,):
                db.execute(f"SET hnsw.ef_search = {max(40, k_prime)}")
                found, latency = [], []
                for query in queries:
                    literal = "[" + ",".join(map(str, query)) + "]"
                    merged: list[tuple[float, int]] = []
                    slowest = 0.0
                    for shard in range(shards):
                        started = time.perf_counter()
                        merged += db.execute(
                            f"SELECT embedding <=> %s::vector, id FROM s{shards}_{shard} "
                            "ORDER BY embedding <=> %s::vector LIMIT %s",
                            (literal, literal, k_prime),
                        ).fetchall()
                        slowest = max(slowest, time.perf_counter() - started)
                    started = time.perf_counter()
                    merged.sort()
                    top = {int(doc) for _, doc in merged[:TOP]}
                    latency.append(slowest + time.perf_counter() - started)
                    found.append(top)
                recall = float(
                    np.mean([len(f & e) / TOP for f, e in zip(found, exact, strict=True)])
                )
                results[f"S{shards}_k{k_prime}"] = {
                    "shards": shards,
                    "k_prime": k_prime,
                    "recall_at_10": round(recall, 4),
                    "p50_ms": round(1000 * float(np.percentile(latency, 50)), 3),
                }
                print(f"dense S={shards} k'={k_prime}: {results[f'S{shards}_k{k_prime}']}")
    return results


def main() -> None:
    unwind_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--documents", type=int, default=0, help="0: every document")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--cache-dir", type=Path, default=labelled_corpus.default_cache_dir())
    args = parser.parse_args()
    documents, queries = labelled_corpus.load(labelled_corpus.ensure(args.cache_dir))
    queries = queries[: args.queries]
    if args.documents:
        wanted = {r for q in queries for r in q.relevant}
        others = [d for d in documents if d.id not in wanted]
        keep = wanted | {d.id for d in random.Random(7).sample(others, args.documents)}
        documents = [d for d in documents if d.id in keep]
    index = {d.id: i for i, d in enumerate(documents)}
    relevant = [{index[r] for r in q.relevant if r in index} for q in queries]
    texts = [f"{d.title}\n{labelled_corpus.cap_words(d.text, WORDS)}" for d in documents]
    started = time.perf_counter()
    embedder = CachedEmbedder(args.cache_dir)
    vectors = embedder.embed(texts, "passages")
    query_vectors = embedder.embed([q.text for q in queries], "queries")
    took = time.perf_counter() - started
    print(f"{len(documents)} documents, {len(queries)} queries embedded in {took:.0f} s")
    assignment = {s: np.array([shard_of(d.id, s) for d in documents]) for s in SHARDS}
    corpus = TermCounts([f"{d.title}\n{d.text}" for d in documents])
    terms = corpus.query_terms([q.text for q in queries])
    keyword: dict[str, Any] = {}
    reference = bm25_runs(corpus, terms, assignment[1], 1)["global"]
    for shards in SHARDS[1:]:
        runs = bm25_runs(corpus, terms, assignment[shards], shards)
        keyword[f"S{shards}"] = {
            "shards": shards,
            "mrr_at_10_local_stats": round(mrr_at_10(runs["local"], relevant), 4),
            "mrr_at_10_global_stats": round(mrr_at_10(runs["global"], relevant), 4),
            "overlap_at_10_local_stats": overlap(runs["local"], reference),
            "overlap_at_10_global_stats": overlap(runs["global"], reference),
        }
        print(f"bm25 S={shards}: {keyword[f'S{shards}']}")
    exact_scores = query_vectors @ vectors.T
    exact = [set(np.argsort(-row)[:TOP].tolist()) for row in exact_scores]
    with (
        tempfile.TemporaryDirectory() as work,
        running_postgres(Path(work) / "pg", free_port(), THROWAWAY_SETTINGS) as url,
    ):
        dense = dense_runs(url, vectors, query_vectors, assignment, exact)
    write_result(
        "shard_merge",
        {
            "documents": len(documents),
            "queries": len(queries),
            "words_per_vector": WORDS,
            "bm25_unsharded_mrr_at_10": round(mrr_at_10(reference, relevant), 4),
            "bm25": keyword,
            "dense": dense,
        },
    )


if __name__ == "__main__":
    main()
