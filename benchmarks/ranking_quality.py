"""Ranking quality of Tandem's index against in-process references, on two labelled sets.

Sets: `man-perl`, the known-item set of Debian man pages and Perl documentation
(benchmarks/labelled_corpus.py, built into the cache directory on first use), and
`stdlib`, the small hand-written set (benchmarks/quality_set.py). For each set the script
starts a throwaway PostgreSQL, applies the migrations, chunks every document with the
worker's Chunker, embeds the chunks in this process with the prepared model (cached on
disk: benchmarks/embedding_cache.py) and writes them through the worker's write path (the
documents catalog, then `PostgresIndex.replace_document`, so the database's own triggers
run). Every query then runs through `tandem.search.Searcher` (the library the API route
calls), a page of 10 as the API asks by default, in keyword and semantic mode and in
hybrid mode with both fusions at several alphas; a document's rank is its best chunk's.
The references (benchmarks/ranking_references.py: BM25, exact dense, and a grid of their
fusions) are computed in the same run from the same chunks and vectors.

Each set's queries are split into a tuning and a held-out half (benchmarks/ranking_split.py);
the best reference fusion and Tandem's best hybrid are chosen on the tuning half and the
targets reported on the held-out half, with paired bootstrap intervals
(benchmarks/ranking_report.py). MRR@10 and recall@10 of every configuration on both
halves, the choices and the targets go to benchmarks/results/ranking_quality.json.

    python -m benchmarks.ranking_quality [--quick] [--set man-perl|stdlib|both]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import labelled_corpus, quality_set, ranking_references
from benchmarks.embedding_cache import CachedEmbedder
from benchmarks.processes import unwind_on_sigterm
from benchmarks.ranking_report import from_ranks, ranks_in, row, summarize
from benchmarks.ranking_runs import (
    Configuration,
    chunk_documents,
    configurations,
    ingest,
    tandem_rankings,
    throwaway_database,
)
from benchmarks.ranking_split import HELD_OUT, RULE, TUNING, PerQuery, Split
from benchmarks.results_io import write_result
from tandem.index.fusion import Fusion
from tandem.index.protocol import DEFAULT_HYBRID_ALPHA
from tandem.model_files import Precision
from tandem.worker.chunking import Chunker

DEPTH = 100  # documents a reference ranks in first_relevant_rank
LINEAR_ALPHAS = (0.5, 0.6, 0.7, 0.8, 0.9)
RRF_ALPHAS = (0.5, 0.7)
QUICK_QUERIES = 150
QUICK_DOCUMENTS = 1500
SEED = 8


def load_set(
    name: str, cache_dir: Path, quick: bool, max_documents: int | None = None
) -> tuple[Any, Any]:
    """The set's documents and queries; man-perl with `quick` a seeded sample of queries,
    and with `quick` or `max_documents` every remaining query's relevant document plus
    seeded distractors up to that many documents."""
    if name == "stdlib":
        documents, queries = quality_set.load()
        return documents, (queries[::4] if quick else queries)
    documents, queries = labelled_corpus.load(labelled_corpus.ensure(cache_dir))
    limit = QUICK_DOCUMENTS if quick else max_documents
    rng = random.Random(SEED)
    if quick:
        queries = sorted(rng.sample(queries, QUICK_QUERIES), key=lambda q: q.id)
    if limit is None or limit >= len(documents):
        return documents, queries
    relevant = {d for q in queries for d in q.relevant}
    others = [d for d in documents if d.id not in relevant]
    room = max(0, limit - len(relevant))
    keep = relevant | {d.id for d in rng.sample(others, min(room, len(others)))}
    return [d for d in documents if d.id in keep], queries


def _print(name: str, found: dict[str, Any]) -> None:
    print(
        f"  {name:30} MRR@10 {found['mrr_at_10']:.3f} (tuning {found[TUNING]['mrr_at_10']:.3f},"
        f" held-out {found[HELD_OUT]['mrr_at_10']:.3f})  recall@10 {found['recall_at_10']:.3f}",
        flush=True,
    )


def _first(ranks: list[list[int | None]]) -> list[int | None]:
    return [min((r for r in per_query if r is not None), default=None) for per_query in ranks]


def tandem_side(
    sessions: Any, prepared: Any, configs: list[Configuration], split: Split
) -> tuple[dict[str, PerQuery], dict[str, dict[str, Any]]]:
    scores: dict[str, PerQuery] = {}
    results: dict[str, dict[str, Any]] = {}
    for config, ranked in tandem_rankings(sessions, prepared, configs):
        ranks = ranks_in(ranked, prepared.queries)
        scores[config.name] = from_ranks(ranks)
        results[config.name] = row(split, scores[config.name], _first(ranks)) | config.describe()
        _print(config.name, results[config.name])
    return scores, results


def reference_side(
    prepared: Any, split: Split
) -> tuple[dict[str, PerQuery], dict[str, PerQuery], dict[str, dict[str, Any]]]:
    """(plain references, fusion grid, result rows of the plain ones)."""
    ids = {d.id: i for i, d in enumerate(prepared.documents)}
    relevant = [[ids[d] for d in q.relevant] for q in prepared.queries]
    scores = ranking_references.compute(
        [f"{d.title}\n{d.text}" for d in prepared.documents],
        prepared.chunk_texts,
        prepared.chunk_document,
        prepared.chunk_vectors,
        [q.text for q in prepared.queries],
        prepared.query_vectors,
    )
    plain: dict[str, PerQuery] = {}
    results: dict[str, dict[str, Any]] = {}
    for name, matrix, positive in (
        ("reference-bm25", scores.bm25, True),
        ("reference-bm25-chunks", scores.bm25_chunks, True),
        ("reference-dense", scores.dense, False),
    ):
        ranks = ranking_references.ranks_of(matrix, relevant, require_positive=positive)
        plain[name] = from_ranks(ranks)
        results[name] = row(split, plain[name], _first(ranks))
        _print(name, results[name])
    fuser = ranking_references.Fuser(scores)
    fusions = {
        fusion.name: from_ranks(ranking_references.ranks_of(fuser.fused(fusion), relevant))
        for fusion in ranking_references.fusion_grid()
    }
    return plain, fusions, results


def run_set(
    name: str, args: argparse.Namespace, embedder: CachedEmbedder, work: Path
) -> dict[str, Any]:
    documents, queries = load_set(name, args.cache_dir, args.quick, args.max_documents)
    split = Split.of(queries)
    print(f"[{name}] {len(documents)} documents, {len(queries)} queries {split.describe()}")
    started = time.perf_counter()
    chunker = Chunker.from_model_dir(embedder.directory)
    prepared = chunk_documents(name, documents, queries, chunker, embedder)
    seconds: dict[str, float] = {"prepare": time.perf_counter() - started}
    alphas = {Fusion.LINEAR: LINEAR_ALPHAS, Fusion.RRF: RRF_ALPHAS}
    if args.quick:
        alphas = {fusion: (DEFAULT_HYBRID_ALPHA,) for fusion in Fusion}
    configs = configurations(alphas, tuple(args.opening_weights), tuple(args.limits))
    with throwaway_database(work / name) as sessions:
        seconds["ingest"] = ingest(sessions, prepared)
        started = time.perf_counter()
        tandem, results = tandem_side(sessions, prepared, configs, split)
        seconds["tandem_queries"] = time.perf_counter() - started
    started = time.perf_counter()
    references, fusions, reference_rows = reference_side(prepared, split)
    seconds["references"] = time.perf_counter() - started
    candidates = [c.name for c in configs if c.candidate]
    summary = summarize(split, tandem, candidates, references, fusions)
    for target, found in summary["targets"].items():
        held = found[HELD_OUT]
        print(
            f"  {target}: held-out {held['value']:.3f} [{held['ci95_low']:.3f},"
            f" {held['ci95_high']:.3f}], tuning {found[TUNING]['value']:.3f}",
            flush=True,
        )
    return {
        "documents": len(documents),
        "chunks": len(prepared.chunk_texts),
        "queries": len(queries),
        "query_ids": [q.id for q in queries],
        "split": split.describe(),
        "seconds": seconds,
        "summary": summary,
        "results": results | reference_rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK_QUERIES} man/perl queries over {QUICK_DOCUMENTS} documents, "
        f"every fourth stdlib query, alpha {DEFAULT_HYBRID_ALPHA} only",
    )
    parser.add_argument(
        "--opening-weights",
        type=float,
        nargs="*",
        default=[],
        help="semantic and hybrid also at these opening-chunk weights (0: each chunk alone)",
    )
    parser.add_argument(
        "--limits",
        type=int,
        nargs="*",
        default=[100],
        help="default hybrid also asking for this many hits (its retrievers' pools grow)",
    )
    parser.add_argument(
        "--max-documents",
        type=int,
        default=None,
        help="man-perl: every query's relevant page plus seeded distractors up to this many "
        "documents (default: all 5,584)",
    )
    parser.add_argument(
        "--precision",
        type=Precision,
        choices=list(Precision),
        default=Precision.FP32,
        help="the model's weights the vectors come from (both sides use the same vectors)",
    )
    parser.add_argument("--set", choices=("man-perl", "stdlib", "both"), default="both")
    parser.add_argument("--cache-dir", type=Path, default=labelled_corpus.default_cache_dir())
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    unwind_on_sigterm()
    names = ("man-perl", "stdlib") if args.set == "both" else (args.set,)
    embedder = CachedEmbedder(args.cache_dir, precision=args.precision)
    started = time.perf_counter()
    sets: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="tandem-ranking-bench-") as tmp:
        for name in names:
            sets[name] = run_set(name, args, embedder, Path(tmp))
    result = {
        "benchmark": "ranking_quality",
        "quick": args.quick,
        "max_documents": args.max_documents,
        "precision": args.precision.value,
        "model": embedder.model_key,
        "texts_embedded_this_run": embedder.embedded,
        "embed_seconds": embedder.embed_seconds,
        "seconds": time.perf_counter() - started,
        "split_rule": RULE,
        "sets": sets,
    }
    name = "ranking_quality_quick" if args.quick else "ranking_quality"
    print(f"-> {write_result(name, result, args.output)}")


if __name__ == "__main__":
    main()
