"""Does int8 keep retrieval quality? Dense MRR@10 with fp32 and int8 vectors, in-process.

This decides the default TANDEM_PRECISION: int8 only if its MRR@10 stays within 0.005 of
fp32 on the project's labelled sets. For each set, every document is chunked with the
worker's Chunker, the chunks and the queries are embedded with the prepared fp32 and int8
models (same batches: sorted by length, 32 a batch, as the indexing role batches), and each
query ranks the documents by their best chunk's cosine (what semantic search does).
Reported per set: MRR@10 and recall@10 for int8/int8, fp32/fp32 and the mixed pairs
(documents in one precision, queries in the other: an index that was not re-embedded),
and the cosine between the two precisions' vectors.

Sets: `stdlib` (benchmarks/data/retrieval_set.json, hand-written queries) and `man-perl`
(benchmarks/labelled_corpus.py, known-item queries; used when it has been built), of
which a fixed seeded sample is used by default (--max-queries, --max-documents: every
sampled query's relevant document plus distractors).
Vectors are cached under the labelled corpus cache directory by model file digest.

    python -m benchmarks.precision_quality [--set stdlib|man-perl|both]
"""

from __future__ import annotations

import argparse
import hashlib
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from benchmarks import labelled_corpus, quality_set
from benchmarks.quality_set import LabelledDocument, LabelledQuery
from benchmarks.results_io import write_result
from tandem.config import ModelCacheSettings
from tandem.model_files import ModelKind, Precision, locate_prepared, model_file
from tandem.model_server.engine import l2_normalize
from tandem.model_server.onnx_model import OnnxModel, load_model
from tandem.worker.chunking import Chunker
from tandem.worker.parsing import ContentType, ParsedDocument

Matrix = npt.NDArray[np.float32]
CUTOFF = 10
BATCH = 32
THRESHOLD = 0.005  # the largest MRR@10 loss int8 may cost and still be the default
SEED = 8


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


class Embedder:
    """One precision's model, with vectors cached on disk per (model file, text list)."""

    def __init__(self, precision: Precision, cache_dir: Path, threads: int) -> None:
        settings = ModelCacheSettings()
        directory, manifest = locate_prepared(
            settings.model_cache,
            settings.embedding_model,
            ModelKind.BI_ENCODER,
            precision=precision,
        )
        self.precision = precision
        self.model: OnnxModel = load_model(
            directory, manifest, threads, spinning=False, precision=precision
        )
        self.key = f"{manifest.name}-{precision.value}-{_digest(directory / model_file(precision))}"
        self.cache_dir = cache_dir / "precision-vectors" / self.key
        self.seconds = 0.0

    def embed(self, texts: list[str], label: str) -> Matrix:
        listing = hashlib.sha256("\0".join(texts).encode()).hexdigest()[:16]
        cached = self.cache_dir / f"{label}-{listing}.npy"
        if cached.exists():
            vectors: Matrix = np.load(cached)
            return vectors
        started = time.perf_counter()
        limit = self.model.manifest.max_seq_length
        items = self.model.tokenize(texts, limit)
        order = sorted(range(len(items)), key=lambda i: len(items[i]))
        vectors = np.zeros((len(texts), self.model.manifest.dimensions), dtype=np.float32)
        for start in range(0, len(order), BATCH):
            rows = order[start : start + BATCH]
            vectors[rows] = l2_normalize(self.model.run([items[i] for i in rows]))
            if start and start % (BATCH * 64) == 0:
                print(f"    {self.precision.value} {label}: {start}/{len(texts)}", flush=True)
        self.seconds += time.perf_counter() - started
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        np.save(cached, vectors)
        return vectors


def rank(
    chunk_vectors: Matrix, owner: npt.NDArray[np.int64], documents: int, queries: Matrix
) -> list[list[int]]:
    """Top-10 document indexes per query, each document scored by its best chunk."""
    ranked = []
    for start in range(0, len(queries), 256):
        scores = queries[start : start + 256] @ chunk_vectors.T
        best = np.full((scores.shape[0], documents), -np.inf, dtype=np.float32)
        np.maximum.at(best.T, owner, scores.T)
        top = np.argsort(-best, axis=1, kind="stable")[:, :CUTOFF]
        ranked += [list(map(int, row)) for row in top]
    return ranked


def evaluate(
    ranked: list[list[int]], queries: list[LabelledQuery], ids: list[str]
) -> dict[str, float]:
    reciprocal, recall = [], []
    for ranking, query in zip(ranked, queries, strict=True):
        names = [ids[i] for i in ranking]
        first = next((n for n, doc in enumerate(names, 1) if doc in query.relevant), None)
        reciprocal.append(1.0 / first if first else 0.0)
        recall.append(len(set(names) & set(query.relevant)) / len(query.relevant))
    return {"mrr_at_10": float(np.mean(reciprocal)), "recall_at_10": float(np.mean(recall))}


def load_set(name: str, cache_dir: Path) -> tuple[list[LabelledDocument], list[LabelledQuery]]:
    if name == "stdlib":
        return quality_set.load()
    path = labelled_corpus.set_path(cache_dir)
    if not path.exists():
        raise FileNotFoundError(f"{path}: build it with `python -m benchmarks.labelled_corpus`")
    return labelled_corpus.load(path)


def sample(
    documents: list[LabelledDocument],
    queries: list[LabelledQuery],
    max_queries: int,
    max_documents: int,
) -> tuple[list[LabelledDocument], list[LabelledQuery]]:
    """A fixed sample (seeded): `max_queries` queries, every document relevant to one of
    them, and other documents as distractors up to `max_documents` in all."""
    rng = random.Random(SEED)
    if len(queries) > max_queries:
        queries = sorted(rng.sample(queries, max_queries), key=lambda q: q.id)
    relevant = {doc for q in queries for doc in q.relevant}
    kept = [d for d in documents if d.id in relevant]
    others = [d for d in documents if d.id not in relevant]
    room = max(0, max_documents - len(kept))
    kept += rng.sample(others, min(room, len(others)))
    return sorted(kept, key=lambda d: d.id), queries


def run_set(
    name: str, embedders: dict[Precision, Embedder], args: argparse.Namespace
) -> dict[str, Any]:
    documents, queries = load_set(name, args.cache_dir)
    total = {"documents": len(documents), "queries": len(queries)}
    documents, queries = sample(documents, queries, args.max_queries, args.max_documents)
    chunker = Chunker.from_model_dir(
        locate_prepared(
            ModelCacheSettings().model_cache,
            ModelCacheSettings().embedding_model,
            ModelKind.BI_ENCODER,
            need_weights=False,
        )[0]
    )
    chunks = [
        chunker.chunk(ParsedDocument(d.title, d.text, d.source, ContentType.TEXT))
        for d in documents
    ]
    texts = [c.embed_text for per_document in chunks for c in per_document]
    owner = np.repeat(np.arange(len(documents)), [len(c) for c in chunks]).astype(np.int64)
    print(f"[{name}] {len(documents)} documents, {len(texts)} chunks, {len(queries)} queries")
    chunk_vectors = {p: e.embed(texts, f"{name}-chunks") for p, e in embedders.items()}
    query_vectors = {
        p: e.embed([q.text for q in queries], f"{name}-queries") for p, e in embedders.items()
    }
    ids = [d.id for d in documents]
    fp32, int8 = Precision.FP32, Precision.INT8
    pairs = {
        "fp32": (fp32, fp32),
        "int8": (int8, int8),
        "int8_documents_fp32_queries": (int8, fp32),
        "fp32_documents_int8_queries": (fp32, int8),
    }
    results = {
        label: evaluate(
            rank(chunk_vectors[docs], owner, len(documents), query_vectors[qs]), queries, ids
        )
        for label, (docs, qs) in pairs.items()
    }
    for label, row in results.items():
        print(f"  {label:28} MRR@10 {row['mrr_at_10']:.4f}  recall@10 {row['recall_at_10']:.4f}")
    cosine = np.sum(chunk_vectors[fp32] * chunk_vectors[int8], axis=1)
    query_cosine = np.sum(query_vectors[fp32] * query_vectors[int8], axis=1)
    loss = results["fp32"]["mrr_at_10"] - results["int8"]["mrr_at_10"]
    return {
        "full_set": total,
        "documents": len(documents),
        "chunks": len(texts),
        "queries": len(queries),
        "results": results,
        "int8_mrr_loss": loss,
        "int8_within_threshold": loss <= THRESHOLD,
        "chunk_cosine_int8_vs_fp32": {
            "mean": float(cosine.mean()),
            "min": float(cosine.min()),
            "p01": float(np.percentile(cosine, 1)),
        },
        "query_cosine_int8_vs_fp32": {
            "mean": float(query_cosine.mean()),
            "min": float(query_cosine.min()),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", choices=["stdlib", "man-perl", "both"], default="both")
    parser.add_argument("--cache-dir", type=Path, default=labelled_corpus.default_cache_dir())
    parser.add_argument("--threads", type=int, default=2)
    # Embedding every man-perl chunk twice takes an hour on 2 busy cores: a fixed sample.
    parser.add_argument("--max-queries", type=int, default=300)
    parser.add_argument("--max-documents", type=int, default=1000)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    names = ["stdlib", "man-perl"] if args.set == "both" else [args.set]
    embedders = {p: Embedder(p, args.cache_dir, args.threads) for p in Precision}
    sets = {name: run_set(name, embedders, args) for name in names}
    within = all(s["int8_within_threshold"] for s in sets.values())
    result = {
        "benchmark": "precision_quality",
        "threshold_mrr_at_10": THRESHOLD,
        "default_precision": "int8" if within else "fp32",
        "int8_within_threshold_on_every_set": within,
        "embed_seconds": {p.value: e.seconds for p, e in embedders.items()},
        "sets": sets,
    }
    print(f"default precision by this measurement: {result['default_precision']}")
    print(f"-> {write_result('precision_quality', result, args.output)}")


if __name__ == "__main__":
    main()
