"""Ranking quality of Tandem's index against in-process references, on two labelled sets.

Sets: `man-perl`, the known-item set of Debian man pages and Perl documentation
(benchmarks/labelled_corpus.py, built into the cache directory on first use), and
`stdlib`, the small hand-written set (benchmarks/quality_set.py). For each set the script
starts a throwaway PostgreSQL, applies the migrations, chunks every document with the
worker's Chunker, embeds the chunks in this process with the prepared model (cached on
disk: benchmarks/embedding_cache.py) and writes them through the worker's write path (the
documents catalogue, then `PostgresIndex.replace_document`, so the database's own triggers
run). Every query then runs through `tandem.search.Searcher` (the library the API route
calls) in keyword and semantic mode and in hybrid mode with both fusions at several
alphas; a document's rank is its best chunk's. The references
(benchmarks/ranking_references.py) are computed in the same run from the same chunks and
vectors. MRR@10, recall@10 and Tandem's ratios to the references
go to benchmarks/results/ranking_quality.json.

    python -m benchmarks.ranking_quality [--quick] [--set man-perl|stdlib|both]
"""

from __future__ import annotations

import argparse
import random
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import labelled_corpus, quality_set, ranking_references
from benchmarks.embedding_cache import CachedEmbedder
from benchmarks.ranking_runs import (
    Configuration,
    chunk_documents,
    configurations,
    ingest,
    tandem_rankings,
    throwaway_database,
)
from benchmarks.results_io import write_result
from benchmarks.retrieval_quality import score
from tandem.worker.chunking import Chunker

CUTOFF = 10
DEPTH = 100  # chunks asked of Tandem, documents kept of a reference
ALPHAS = (0.5, 0.7, 0.8)
QUICK_QUERIES = 150
QUICK_DOCUMENTS = 1500
SEED = 8


def load_set(name: str, cache_dir: Path, quick: bool) -> tuple[Any, Any]:
    if name == "stdlib":
        documents, queries = quality_set.load()
        return documents, (queries[::4] if quick else queries)
    documents, queries = labelled_corpus.load(labelled_corpus.ensure(cache_dir))
    if not quick:
        return documents, queries
    rng = random.Random(SEED)
    queries = sorted(rng.sample(queries, QUICK_QUERIES), key=lambda q: q.id)
    relevant = {d for q in queries for d in q.relevant}
    others = [d for d in documents if d.id not in relevant]
    keep = relevant | {d.id for d in rng.sample(others, QUICK_DOCUMENTS - len(relevant))}
    return [d for d in documents if d.id in keep], queries


def evaluate(rankings: list[list[str]], queries: list[Any]) -> dict[str, Any]:
    """MRR@10 and recall@10, and each query's rank of its first relevant document."""
    reciprocal: list[float] = []
    recall: list[float] = []
    first: list[int | None] = []
    for ranking, query in zip(rankings, queries, strict=True):
        rr, found = score(ranking[:CUTOFF], query.relevant)
        reciprocal.append(rr)
        recall.append(found)
        first.append(next((r for r, d in enumerate(ranking, 1) if d in query.relevant), None))
    return {
        "mrr_at_10": float(np.mean(reciprocal)),
        "recall_at_10": float(np.mean(recall)),
        "first_relevant_rank": first,
    }


def ratios(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Tandem against the references, as the issue's targets state them."""

    def mrr(name: str) -> float:
        return float(results[name]["mrr_at_10"])

    def recall(name: str) -> float:
        return float(results[name]["recall_at_10"])

    linear_default = f"reference-linear-{ranking_references.DEFAULT_LINEAR_ALPHA}"
    best_fusion = max(mrr("reference-rrf"), mrr(linear_default))
    best_grid = max(mrr(n) for n in results if n.startswith(("reference-rrf", "reference-lin")))
    # Comparison runs at other opening weights are not candidates for "best".
    hybrids = {n: mrr(n) for n in results if n.startswith("hybrid-") and "-opening-" not in n}
    best_hybrid = max(hybrids, key=lambda n: hybrids[n])
    return {
        "keyword_over_reference_bm25": mrr("keyword") / mrr("reference-bm25"),
        "keyword_recall_over_reference_bm25": recall("keyword") / recall("reference-bm25"),
        "semantic_over_reference_dense": mrr("semantic") / mrr("reference-dense"),
        "semantic_recall_over_reference_dense": recall("semantic") / recall("reference-dense"),
        "best_reference_fusion": best_fusion,
        "best_reference_fusion_over_alpha_grid": best_grid,
        "best_hybrid": best_hybrid,
        "best_hybrid_minus_best_reference_fusion": hybrids[best_hybrid] - best_fusion,
        "hybrid_minus_best_reference_fusion": {n: v - best_fusion for n, v in hybrids.items()},
        "targets_met": {
            "keyword >= 0.97 x reference BM25": mrr("keyword") >= 0.97 * mrr("reference-bm25"),
            "semantic >= 0.99 x reference dense": mrr("semantic") >= 0.99 * mrr("reference-dense"),
            "best hybrid >= best reference fusion + 0.01": hybrids[best_hybrid]
            >= best_fusion + 0.01,
        },
    }


def run_set(
    name: str, args: argparse.Namespace, embedder: CachedEmbedder, work: Path
) -> dict[str, Any]:
    documents, queries = load_set(name, args.cache_dir, args.quick)
    print(f"[{name}] {len(documents)} documents, {len(queries)} queries", flush=True)
    started = time.perf_counter()
    chunker = Chunker.from_model_dir(embedder.directory)
    prepared = chunk_documents(name, documents, queries, chunker, embedder)
    seconds: dict[str, float] = {"prepare": time.perf_counter() - started}
    ids = [d.id for d in documents]
    results: dict[str, dict[str, Any]] = {}
    configs: list[Configuration] = configurations(
        (0.7,) if args.quick else ALPHAS, tuple(args.opening_weights)
    )
    with throwaway_database(work / name) as sessions:
        seconds["ingest"] = ingest(sessions, prepared)
        started = time.perf_counter()
        for config, ranked in tandem_rankings(sessions, prepared, configs, DEPTH):
            results[config.name] = evaluate(ranked, queries) | config.describe()
            row = results[config.name]
            print(
                f"  {config.name:22} MRR@10 {row['mrr_at_10']:.3f}  "
                f"recall@10 {row['recall_at_10']:.3f}",
                flush=True,
            )
        seconds["tandem_queries"] = time.perf_counter() - started
    started = time.perf_counter()
    scores = ranking_references.compute(
        [f"{d.title}\n{d.text}" for d in documents],
        prepared.chunk_texts,
        prepared.chunk_document,
        prepared.chunk_vectors,
        [q.text for q in queries],
        prepared.query_vectors,
    )
    for reference, ranked_indexes in ranking_references.rankings(scores, DEPTH).items():
        ranked_ids = [[ids[i] for i in ranking] for ranking in ranked_indexes]
        results[reference] = evaluate(ranked_ids, queries)
        row = results[reference]
        print(
            f"  {reference:22} MRR@10 {row['mrr_at_10']:.3f}  recall@10 {row['recall_at_10']:.3f}",
            flush=True,
        )
    seconds["references"] = time.perf_counter() - started
    summary = ratios(results)
    print(
        f"  keyword/BM25 {summary['keyword_over_reference_bm25']:.3f}  "
        f"semantic/dense {summary['semantic_over_reference_dense']:.3f}  "
        f"best hybrid ({summary['best_hybrid']}) - best reference fusion "
        f"{summary['best_hybrid_minus_best_reference_fusion']:+.3f}",
        flush=True,
    )
    return {
        "documents": len(documents),
        "chunks": len(prepared.chunk_texts),
        "queries": len(queries),
        "query_ids": [q.id for q in queries],
        "seconds": seconds,
        "ratios": summary,
        "results": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK_QUERIES} man/perl queries over {QUICK_DOCUMENTS} documents, "
        "every fourth stdlib query, alpha 0.7 only",
    )
    parser.add_argument(
        "--opening-weights",
        type=float,
        nargs="*",
        default=[0.0],
        help="semantic and hybrid also at these opening-chunk weights (0: each chunk alone)",
    )
    parser.add_argument("--set", choices=("man-perl", "stdlib", "both"), default="both")
    parser.add_argument("--cache-dir", type=Path, default=labelled_corpus.default_cache_dir())
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    # SIGTERM unwinds like an error: PostgreSQL is stopped and the temporary directory removed.
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    names = ("man-perl", "stdlib") if args.set == "both" else (args.set,)
    embedder = CachedEmbedder(args.cache_dir)
    started = time.perf_counter()
    sets: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="tandem-ranking-bench-") as tmp:
        for name in names:
            sets[name] = run_set(name, args, embedder, Path(tmp))
    result = {
        "benchmark": "ranking_quality",
        "quick": args.quick,
        "model": embedder.model_key,
        "texts_embedded_this_run": embedder.embedded,
        "embed_seconds": embedder.embed_seconds,
        "seconds": time.perf_counter() - started,
        "sets": sets,
    }
    name = "ranking_quality_quick" if args.quick else "ranking_quality"
    print(f"-> {write_result(name, result, args.output)}")


if __name__ == "__main__":
    main()
