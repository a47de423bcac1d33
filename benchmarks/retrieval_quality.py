"""Retrieval quality on a labelled set of real text: MRR@10 and recall@10 per mode.

Documents: standard-library modules' docstrings; queries: hand-written paraphrases with
their relevant modules (benchmarks/quality_set.py, benchmarks/data/retrieval_set.json).
The documents go through the real pipeline (POST /api/documents/batch, worker, indexing
server); every query then runs through POST /api/search in keyword and semantic mode, and
in hybrid mode with both fusion methods (an API server per TANDEM_FUSION value) at
several alphas. Hits are chunks: a document's rank is that of its best chunk.

The queries are split into a tuning and a held-out half (benchmarks/ranking_split.py):
every configuration is reported on both, and the best hybrid is chosen on the tuning half
only. `--resplit FILE` recomputes the halves of an earlier run from its per-query
figures, without running anything.

    python -m benchmarks.retrieval_quality [--quick] [--resplit FILE]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson

from benchmarks import tandem_stack as stack
from benchmarks.processes import unwind_on_sigterm
from benchmarks.quality_set import LabelledDocument, LabelledQuery, load
from benchmarks.ranking_split import HALVES, Split, choose, halves
from benchmarks.ranking_split import PerQuery as SplitScores
from benchmarks.results_io import write_result

CUTOFF = 10
SEARCH_LIMIT = 100  # chunks asked for, so that ten distinct documents are almost always there
ALPHAS = (0.3, 0.5, 0.7)
INGEST_TIMEOUT = 600.0


@dataclass(frozen=True)
class Configuration:
    name: str
    mode: str
    fusion: str  # which API server answers (TANDEM_FUSION); irrelevant outside hybrid
    alpha: float | None = None


def configurations(alphas: tuple[float, ...]) -> list[Configuration]:
    found = [
        Configuration("keyword", "keyword", "linear"),
        Configuration("semantic", "semantic", "linear"),
    ]
    for fusion in ("linear", "rrf"):
        found += [Configuration(f"hybrid-{fusion}-{a}", "hybrid", fusion, a) for a in alphas]
    return found


def ingest(api_url: str, documents: list[LabelledDocument]) -> dict[str, Any]:
    body = {
        "documents": [
            {"id": d.id, "title": d.title, "text": d.text, "source": f"stdlib/{d.source}"}
            for d in documents
        ]
    }
    started = time.monotonic()
    with httpx.Client(base_url=api_url, timeout=60.0) as client:
        response = client.post("/api/documents/batch", json=body).raise_for_status()
        attempt_id = response.json()["attempt_id"]
        while time.monotonic() - started < INGEST_TIMEOUT:
            attempt = client.get(f"/api/index-attempts/{attempt_id}").raise_for_status().json()
            if attempt["status"] in ("succeeded", "failed"):
                break
            time.sleep(0.5)
        else:
            raise RuntimeError(f"ingest did not finish within {INGEST_TIMEOUT:.0f}s")
    if attempt["failed"]:
        raise RuntimeError(f"{attempt['failed']} documents failed to index: {attempt['error']}")
    chunks = sum(item["chunk_count"] for item in attempt["items"])
    return {"documents": len(documents), "chunks": chunks, "seconds": time.monotonic() - started}


def ranked_documents(client: httpx.Client, query: str, config: Configuration) -> list[str]:
    request: dict[str, Any] = {"query": query, "mode": config.mode, "limit": SEARCH_LIMIT}
    if config.alpha is not None:
        request["alpha"] = config.alpha
    body = client.post("/api/search", json=request).raise_for_status().json()
    if body["degraded"]:
        raise RuntimeError(f"search was degraded (inference server unavailable): {query!r}")
    ranking: list[str] = []
    for hit in body["results"]:
        if hit["document_id"] not in ranking:
            ranking.append(hit["document_id"])
    return ranking[:CUTOFF]


def score(ranking: list[str], relevant: tuple[str, ...]) -> tuple[float, float]:
    """(reciprocal rank of the first relevant document, share of relevant found), top 10."""
    first = next((rank for rank, doc in enumerate(ranking, 1) if doc in relevant), None)
    found = len(set(ranking) & set(relevant))
    return (1.0 / first if first else 0.0), found / len(relevant)


def evaluate(
    client: httpx.Client, queries: list[LabelledQuery], config: Configuration
) -> dict[str, Any]:
    per_query: dict[str, dict[str, Any]] = {}
    for query in queries:
        ranking = ranked_documents(client, query.text, config)
        reciprocal, recall = score(ranking, query.relevant)
        per_query[query.id] = {"rr": reciprocal, "recall": recall, "top3": ranking[:3]}

    def mean(key: str, kind: str | None = None) -> float:
        values = [per_query[q.id][key] for q in queries if kind in (None, q.kind)]
        return sum(values) / len(values) if values else 0.0

    return {
        "mode": config.mode,
        "fusion": config.fusion if config.mode == "hybrid" else None,
        "alpha": config.alpha,
        "mrr_at_10": mean("rr"),
        "recall_at_10": mean("recall"),
        "mrr_at_10_keyword_queries": mean("rr", "keyword"),
        "mrr_at_10_semantic_queries": mean("rr", "semantic"),
        "per_query": per_query,
    }


def split_halves(result: dict[str, Any], queries: list[LabelledQuery]) -> dict[str, Any]:
    """`result` with each configuration's MRR@10 and recall@10 on both halves, the split,
    and the hybrid chosen on the tuning half."""
    asked = [q for q in queries if q.id in next(iter(result["results"].values()))["per_query"]]
    split = Split.of(asked)
    scores: dict[str, SplitScores] = {}
    for name, row in result["results"].items():
        per_query = [row["per_query"][q.id] for q in asked]
        scores[name] = SplitScores(
            np.array([p["rr"] for p in per_query]), np.array([p["recall"] for p in per_query])
        )
        row.update(halves(split, scores[name]))
    hybrids = [n for n in scores if n.startswith("hybrid-")]
    chosen, _ = choose(hybrids, scores.__getitem__, split)
    return result | {
        "split": split.describe(),
        "hybrid_chosen_on_tuning": {"name": chosen}
        | {h: halves(split, scores[chosen])[h] for h in HALVES},
    }


def resplit(path: Path) -> None:
    """Add the halves to an earlier run's result file in place (its machine facts kept)."""
    result = orjson.loads(path.read_bytes())
    updated = split_halves(result, load()[1])
    path.write_bytes(orjson.dumps(updated, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    documents, queries = load()
    if args.quick:
        queries = queries[:: max(1, len(queries) // 15)]
    alphas = (0.5,) if args.quick else ALPHAS
    results: dict[str, Any] = {}
    with (
        stack.backends(work / "data", durable=False) as backends,
        stack.model_servers(work, ("inference", "indexing")) as servers,
        stack.worker(work, backends, servers["indexing"].url),
        stack.api_server(work, backends, servers["inference"].url) as linear_api,
        stack.api_server(
            work, backends, servers["inference"].url, {"TANDEM_FUSION": "rrf"}, name="api-rrf"
        ) as rrf_api,
    ):
        ingested = ingest(linear_api.url, documents)
        apis = {"linear": linear_api.url, "rrf": rrf_api.url}
        for config in configurations(alphas):
            with httpx.Client(base_url=apis[config.fusion], timeout=30.0) as client:
                results[config.name] = evaluate(client, queries, config)
            row = results[config.name]
            mrr, recall = row["mrr_at_10"], row["recall_at_10"]
            print(f"{config.name:18} MRR@10 {mrr:.3f}  recall@10 {recall:.3f}", flush=True)
    result = {
        "benchmark": "retrieval_quality",
        "quick": args.quick,
        "documents": len(documents),
        "documents_differing_from_labelled_text": [
            d.id for d in documents if not d.matches_labelled_text
        ],
        "queries": len(queries),
        "keyword_queries": sum(q.kind == "keyword" for q in queries),
        "ingest": ingested,
        "results": results,
    }
    return split_halves(result, queries)


def main() -> None:
    unwind_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="every fourth query, alpha 0.5 only")
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--resplit", type=Path, default=None, help="an earlier run's JSON")
    args = parser.parse_args()
    if args.resplit:
        resplit(args.resplit)
        return
    with tempfile.TemporaryDirectory(prefix="tandem-quality-bench-") as tmp:
        result = run(args, Path(tmp))
    print(f"-> {write_result('retrieval_quality', result, args.output)}")


if __name__ == "__main__":
    main()
