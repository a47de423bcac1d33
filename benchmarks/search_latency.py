"""Search latency through the API (POST /api/search) at 10k and 100k chunks, per mode,
one client at a time and CONCURRENT_CLIENTS at once; then results by document (the API's
default) against every chunk (`group_by_document: false`) side by side, and filtered
searches (benchmarks/search_variants.py).

PostgreSQL is filled directly (COPY) with synthetic chunks whose vectors are built from
real embeddings (see benchmarks/search_corpus.py); the HNSW and GIN indexes are then built
as the migration defines them. Queries (3-7 words cut from the generated sentences) run
one at a time, the same list in every mode, after a few warm-up queries. Alongside, in
this process: the query embedding alone (the inference server, directly) and, for the
first SPLIT_QUERIES queries, the index search alone (PostgresIndex.search with that
vector), and HNSW's recall@10 against an exact scan.

    python -m benchmarks.search_latency [--quick]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psycopg
from pgvector.psycopg import register_vector

from benchmarks import search_corpus as corpus
from benchmarks import search_variants as variants
from benchmarks import tandem_stack as stack
from benchmarks.processes import unwind_on_sigterm
from benchmarks.results_io import summarize_ms, write_result
from tandem.db.session import make_engine, make_session_factory
from tandem.index.fusion import Fusion
from tandem.index.postgres import PostgresIndex
from tandem.index.protocol import IndexQuery, SearchMode
from tandem.model_client.client import ModelClient
from tandem.model_files import FloatArray
from tandem.search.searcher import CANDIDATES  # what the API asks the index for
from tandem.wire.model import TextType

MODES = (SearchMode.KEYWORD, SearchMode.SEMANTIC, SearchMode.HYBRID)
LIMIT = 10
WARMUP = 10
RECALL_QUERIES = 50
SPLIT_QUERIES = 50  # the in-process split runs on the first 50 queries only
REALISM_CHUNKS = 150
CONCURRENT_CLIENTS = 4


def make_queries(pool: corpus.SentencePool, count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    queries = []
    for _ in range(count):
        words = rng.choice(pool.sentences[rng.randrange(len(pool.topics))]).split()
        size = rng.randint(3, 7)
        start = rng.randrange(max(1, len(words) - size))
        queries.append(" ".join(words[start : start + size]).strip(".,;:!?"))
    return queries


def concurrent_api_latency(
    api_url: str, queries: list[str], mode: SearchMode, clients: int
) -> dict[str, Any]:
    """The same queries split over `clients` threads, each with its own connection."""
    shares = [queries[WARMUP + i :: clients] for i in range(clients)]
    with ThreadPoolExecutor(clients) as pool:
        started = time.perf_counter()
        parts = list(pool.map(lambda share: api_latency(api_url, share, mode, 0), shares))
        wall = time.perf_counter() - started
    seconds = [s for part in parts for s in part.pop("client_seconds")]
    return {
        "clients": clients,
        "queries": len(seconds),
        "client_ms": summarize_ms(seconds),
        "queries_per_second": len(seconds) / wall,
        "empty_results": sum(p["empty_results"] for p in parts),
        "degraded": sum(p["degraded"] for p in parts),
    }


def api_latency(
    api_url: str, queries: list[str], mode: SearchMode, warmup: int = WARMUP
) -> dict[str, Any]:
    client_seconds: list[float] = []
    took_ms: list[float] = []
    empty = degraded = 0
    with httpx.Client(base_url=api_url, timeout=30.0) as client:
        for number, query in enumerate(queries):
            started = time.perf_counter()
            response = client.post("/api/search", json={"query": query, "mode": mode.value})
            elapsed = time.perf_counter() - started
            body = response.raise_for_status().json()
            if number < warmup:
                continue
            client_seconds.append(elapsed)
            took_ms.append(float(body["took_ms"]))
            empty += not body["results"]
            degraded += bool(body["degraded"])
    return {
        "queries": len(client_seconds),
        "client_ms": summarize_ms(client_seconds),
        "server_took_ms": summarize_ms([t / 1000 for t in took_ms]),
        "empty_results": empty,
        "degraded": degraded,
        "client_seconds": client_seconds,
    }


def embed_queries(inference_url: str, queries: list[str]) -> tuple[list[FloatArray], list[float]]:
    """Each query alone on the inference server, as the API sends it; vectors and times."""
    client = ModelClient(inference_url, timeout=30.0, overload_wait=0.5)
    vectors, seconds = [], []
    try:
        for query in queries:
            started = time.perf_counter()
            vectors.append(client.embed([query], TextType.QUERY)[0])
            seconds.append(time.perf_counter() - started)
    finally:
        client.close()
    return vectors, seconds[WARMUP:]


def index_latency(
    index: PostgresIndex, queries: list[str], vectors: list[FloatArray], mode: SearchMode
) -> list[float]:
    seconds = []
    for query, vector in zip(queries, vectors, strict=True):
        given = None if mode is SearchMode.KEYWORD else vector  # as the API: no vector
        started = time.perf_counter()
        index.search(IndexQuery(query, given, mode, limit=LIMIT, candidates=CANDIDATES[mode]))
        seconds.append(time.perf_counter() - started)
    return seconds[WARMUP:]


def hnsw_recall(
    index: PostgresIndex, database_url: str, queries: list[str], vectors: list[FloatArray]
) -> float:
    """Share of the exact top 10 (sequential scan) that the HNSW search returns; `index`
    must rank by each chunk's own cosine (opening weight 0) for the two to be comparable."""
    found = total = 0
    with psycopg.connect(corpus.conninfo(database_url)) as connection:
        register_vector(connection)
        connection.execute("SET enable_indexscan = off")
        for query, vector in zip(queries, vectors, strict=True):
            exact = connection.execute(
                "SELECT document_id, ordinal FROM chunks ORDER BY embedding <=> %s LIMIT %s",
                (np.asarray(vector), LIMIT),
            ).fetchall()
            hits = index.search(IndexQuery(query, vector, SearchMode.SEMANTIC, limit=LIMIT))
            approximate = {(h.document_id, h.ordinal) for h in hits}
            found += sum(tuple(row) in approximate for row in exact)
            total += len(exact)
    return found / total if total else 0.0


def measure_size(
    urls: dict[str, str], database_url: str, queries: list[str], vectors: list[FloatArray]
) -> dict[str, Any]:
    engine = make_engine(database_url, pool_size=2)
    index = PostgresIndex(make_session_factory(engine), Fusion.LINEAR)
    try:
        result: dict[str, Any] = {"modes": {}}
        for mode in MODES:
            api = api_latency(urls["api"], queries, mode)
            del api["client_seconds"]
            api["concurrent"] = concurrent_api_latency(
                urls["api"], queries, mode, CONCURRENT_CLIENTS
            )
            split = slice(0, WARMUP + SPLIT_QUERIES)
            seconds = index_latency(index, queries[split], vectors[split], mode)
            api["in_process_index_ms"] = summarize_ms(seconds)
            result["modes"][mode.value] = api
        result |= compare_variants(urls["api"], index, queries, vectors)
        _, embed_seconds = embed_queries(urls["inference"], queries)
        result["in_process_query_embedding_ms"] = summarize_ms(embed_seconds)
        result["hnsw_recall_at_10"] = hnsw_recall(
            PostgresIndex(make_session_factory(engine), Fusion.LINEAR, opening_weight=0.0),
            database_url,
            queries[WARMUP : WARMUP + RECALL_QUERIES],
            vectors[WARMUP : WARMUP + RECALL_QUERIES],
        )
    finally:
        engine.dispose()
    return result


def compare_variants(
    api_url: str, index: PostgresIndex, queries: list[str], vectors: list[FloatArray]
) -> dict[str, Any]:
    """Grouped against ungrouped (through the API, and the index alone), how often a
    grouped page needs a second round, and the filters against none."""
    grouping: dict[str, Any] = {}
    filters: dict[str, Any] = {}
    split = slice(0, WARMUP + SPLIT_QUERIES)
    for mode in MODES:
        grouping[mode.value] = {
            "api": variants.paired_api_latency(api_url, queries, mode, variants.GROUPING, WARMUP),
            "in_process_index_ms": variants.paired_index_latency(
                index, queries[split], vectors[split], mode, WARMUP
            ),
            "share_needing_a_second_round": variants.growth_share(
                index, queries[WARMUP : split.stop], vectors[WARMUP : split.stop], mode
            ),
        }
        filtered = {name: {"filters": body} for name, body in variants.FILTERS.items()}
        filters[mode.value] = variants.paired_api_latency(
            api_url, queries[split], mode, filtered, WARMUP
        )
    return {"grouping": grouping, "filters": filters}


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    sizes: list[int] = args.sizes
    results: dict[str, Any] = {"sizes": {}}
    with (
        stack.backends(work / "data", durable=False) as backends,
        stack.model_servers(work, ("inference",)) as servers,
        stack.api_server(work, backends, servers["inference"].url) as api,
    ):
        urls = {"api": api.url, "inference": servers["inference"].url}
        pool = corpus.sentence_pool(args.topics, args.sentences_per_topic, args.seed, 2)
        results["sentence_pool"] = {
            "topics": len(pool.topics),
            "sentences": sum(len(s) for s in pool.sentences),
            "embed_seconds": pool.embed_seconds,
        }
        queries = make_queries(pool, args.queries + WARMUP, args.seed)
        vectors, _ = embed_queries(urls["inference"], queries)
        documents = 0
        for size in sorted(sizes):
            target = size // corpus.CHUNKS_PER_DOCUMENT
            chunks = corpus.synthesize(pool, documents, target - documents, args.seed)
            if not documents:
                results["vector_realism"] = corpus.vector_realism(chunks[:REALISM_CHUNKS], 2)
            with psycopg.connect(corpus.conninfo(backends.database_url)) as connection:
                corpus.drop_search_indexes(connection)
                copy_seconds = corpus.copy_chunks(connection, chunks)
                index_seconds = corpus.build_search_indexes(connection)
                selectivity = variants.spread_update_times(connection)
            documents = target
            measured = measure_size(urls, backends.database_url, queries, vectors)
            measured |= {"copy_seconds": copy_seconds, "index_build_seconds": index_seconds}
            measured["filter_selectivity"] = selectivity
            results["sizes"][str(size)] = measured
            print(f"{size} chunks: " + _line(measured), flush=True)
    return results | {"queries_per_mode": args.queries, "cpus": stack.role_cpus()}


def _line(measured: dict[str, Any]) -> str:
    modes = "; ".join(
        f"{mode} p50 {m['client_ms']['p50']:.1f} ms p99 {m['client_ms']['p99']:.1f} ms"
        f" (x{CONCURRENT_CLIENTS}: {m['concurrent']['client_ms']['p50']:.1f} /"
        f" {m['concurrent']['client_ms']['p99']:.1f} ms)"
        for mode, m in measured["modes"].items()
    )
    grouping = "; ".join(
        f"{mode} grouped {g['api']['grouped']['client_ms']['p50']:.1f} /"
        f" {g['api']['grouped']['client_ms']['p99']:.1f} ms, ungrouped"
        f" {g['api']['ungrouped']['client_ms']['p50']:.1f} /"
        f" {g['api']['ungrouped']['client_ms']['p99']:.1f} ms"
        for mode, g in measured["grouping"].items()
    )
    return f"{modes}\n  p50 / p99: {grouping}"


def main() -> None:
    unwind_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10k chunks, 40 queries per mode")
    parser.add_argument("--sizes", type=int, nargs="+", default=None)
    parser.add_argument("--queries", type=int, default=None, help="per mode; default 200")
    parser.add_argument("--topics", type=int, default=None)
    parser.add_argument("--sentences-per-topic", type=int, default=None)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    args.sizes = args.sizes or ([10_000] if args.quick else [10_000, 100_000])
    args.queries = args.queries or (40 if args.quick else 200)
    args.topics = args.topics or (40 if args.quick else 120)
    args.sentences_per_topic = args.sentences_per_topic or (40 if args.quick else 80)
    with tempfile.TemporaryDirectory(prefix="tandem-search-bench-") as tmp:
        result = run(args, Path(tmp))
    path = write_result("search_latency", result | {"quick": args.quick}, args.output)
    print(f"-> {path}")


if __name__ == "__main__":
    main()
