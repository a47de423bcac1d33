"""Search latency, throughput, MRR@10 and HNSW recall on real text, 16k to 1M chunks.

The corpus (benchmarks/real_scale_corpus.py), chunked in load order
(benchmarks/real_scale_chunks.py) with vectors real or borrowed
(benchmarks/real_scale_vectors.py), grows in one PostgreSQL through the sizes: each size
COPYs the chunks it adds and rebuilds the HNSW index. Searches go through the API
(POST /api/search) of the stack as `tandem up` starts it (benchmarks/tandem_stack.py). Per
size: every tuning-half query once in each mode (a warm stack: right after a size's load
and index build the first searches read pages no query has touched yet, 3x slower at 1M
chunks in the run before this pass was added), then every held-out query in each mode one
at a time
(client p50 / p99, and MRR@10 of the query's one relevant document, results grouped by
document as the API answers by default), then CONCURRENT_CLIENTS clients for
CONCURRENT_SECONDS per mode, then HNSW recall@10 against an exact scan for RECALL_QUERIES
held-out queries (their vectors from the inference server). The load average is read from
/proc/loadavg before and after each size. The result is written after every size.

    python -m benchmarks.real_scale_run [--sizes 16000 100000 ...]
"""

from __future__ import annotations

import argparse
import itertools
import resource
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg

from benchmarks import real_scale_corpus as corpus
from benchmarks import real_scale_load as load
from benchmarks import real_scale_vectors as vectors_
from benchmarks import search_corpus
from benchmarks import tandem_stack as stack
from benchmarks.processes import unwind_on_sigterm
from benchmarks.results_io import RESULTS_DIR, summarize_ms, write_result
from benchmarks.search_breakdown import parse_server_timing, summarize_stages
from benchmarks.search_latency import embed_queries, hnsw_recall
from tandem.db.session import make_engine, make_session_factory
from tandem.index.fusion import Fusion
from tandem.index.postgres import PostgresIndex
from tandem.index.protocol import SearchMode

SIZES = (16_000, 100_000, 300_000, 1_000_000)
MODES = (SearchMode.KEYWORD, SearchMode.SEMANTIC, SearchMode.HYBRID)
CONCURRENT_CLIENTS = 4
CONCURRENT_SECONDS = 20.0
RECALL_QUERIES = 100
TARGETS = {
    "sequential_small": {"sizes": [16_000, 100_000], "p50_ms": 25.0, "p99_ms": 60.0},
    "sequential_1m": {"sizes": [1_000_000], "p50_ms": 50.0, "p99_ms": 120.0},
    "hybrid_4_clients_100k_qps": 80.0,
}


def loadavg() -> list[float]:
    return [float(f) for f in Path("/proc/loadavg").read_text().split()[:3]]


def _search(
    client: httpx.Client, query: str, mode: SearchMode
) -> tuple[float, list[str], dict[str, float]]:
    """Seconds, the documents found, and the server's stages ({stage: ms}, Server-Timing)."""
    started = time.perf_counter()
    response = client.post("/api/search", json={"query": query, "mode": mode.value})
    elapsed = time.perf_counter() - started
    body = response.raise_for_status().json()
    stages = parse_server_timing(response.headers["server-timing"])
    return elapsed, [hit["document_id"] for hit in body["results"]], stages


def warm(api_url: str, texts: list[str]) -> float:
    """Every text once in every mode; the seconds it took."""
    started = time.perf_counter()
    with httpx.Client(base_url=api_url, timeout=60.0) as client:
        for mode in MODES:
            for text in texts:
                _search(client, text, mode)
    return time.perf_counter() - started


def sequential(
    api_url: str,
    queries: list[dict[str, Any]],
    mode: SearchMode,
    loaded: set[str],
) -> dict[str, Any]:
    """Latency over every query; MRR@10 over the queries whose target is loaded (a size
    cuts the load order at a chunk, so the last targets of the first segment may be out)."""
    seconds: list[float] = []
    reciprocal: list[float] = []
    stages: dict[str, list[float]] = {}
    with httpx.Client(base_url=api_url, timeout=60.0) as client:
        for query in queries:
            elapsed, documents, timing = _search(client, query["text"], mode)
            seconds.append(elapsed)
            for stage, ms in timing.items():
                stages.setdefault(stage, []).append(ms)
            if query["relevant"] not in loaded:
                continue
            rank = documents.index(query["relevant"]) + 1 if query["relevant"] in documents else 0
            reciprocal.append(1.0 / rank if rank else 0.0)
    return {
        "queries": len(seconds),
        "client_ms": summarize_ms(seconds),
        "server_stages_ms": summarize_stages(stages, len(seconds)),
        "mrr_at_10": sum(reciprocal) / len(reciprocal),
        "mrr_queries": len(reciprocal),
    }


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """{part: CPU seconds so far} of each process tree in `pids` and of this process (the
    search clients)."""
    used = {name: stack.process_tree_cpu_seconds(pid) for name, pid in pids.items()}
    own = resource.getrusage(resource.RUSAGE_SELF)
    return used | {"clients": own.ru_utime + own.ru_stime}


def concurrent(
    api_url: str, queries: list[str], mode: SearchMode, pids: dict[str, int]
) -> dict[str, Any]:
    """CONCURRENT_CLIENTS threads, each its own connection, cycling through the queries
    (each from its own offset) for CONCURRENT_SECONDS; with each part's CPU per query (the
    processes in `pids` and the clients): where a 2-core machine's throughput goes."""
    stop = threading.Event()

    def client_loop(offset: int) -> list[float]:
        seconds: list[float] = []
        with httpx.Client(base_url=api_url, timeout=60.0) as client:
            for text in itertools.islice(itertools.cycle(queries), offset, None):
                if stop.is_set():
                    break
                seconds.append(_search(client, text, mode)[0])
        return seconds

    offsets = [i * len(queries) // CONCURRENT_CLIENTS for i in range(CONCURRENT_CLIENTS)]
    cpu_before = cpu_seconds(pids)
    with ThreadPoolExecutor(CONCURRENT_CLIENTS) as pool:
        started = time.perf_counter()
        futures = [pool.submit(client_loop, o) for o in offsets]
        time.sleep(CONCURRENT_SECONDS)
        stop.set()
        parts = [f.result() for f in futures]
        wall = time.perf_counter() - started
    cpu_after = cpu_seconds(pids)
    seconds = [s for part in parts for s in part]
    per_query = max(1, len(seconds))
    return {
        "cpu_ms_per_query": {
            name: round(1000 * (cpu_after[name] - cpu_before[name]) / per_query, 2)
            for name in cpu_before
        },
        "clients": CONCURRENT_CLIENTS,
        "seconds": wall,
        "queries": len(seconds),
        "queries_per_second": len(seconds) / wall,
        "client_ms": summarize_ms(seconds),
    }


def measure(
    urls: dict[str, str],
    pids: dict[str, int],
    database_url: str,
    warmup: list[str],
    held_out: list[dict[str, Any]],
    loaded: set[str],
) -> dict[str, Any]:
    warm_seconds = warm(urls["api"], warmup)
    modes: dict[str, Any] = {}
    for mode in MODES:
        modes[mode.value] = {"sequential": sequential(urls["api"], held_out, mode, loaded)}
        texts = [q["text"] for q in held_out]
        modes[mode.value]["concurrent"] = concurrent(urls["api"], texts, mode, pids)
        print(f"  {mode.value}: {_line(modes[mode.value])}", flush=True)
    texts = [q["text"] for q in held_out[:RECALL_QUERIES]]
    query_vectors, _ = embed_queries(urls["inference"], texts)
    engine = make_engine(database_url, pool_size=2)
    try:
        index = PostgresIndex(make_session_factory(engine), Fusion.LINEAR, opening_weight=0.0)
        recall = hnsw_recall(index, database_url, texts, query_vectors)
    finally:
        engine.dispose()
    return {
        "warm_queries": len(warmup) * len(MODES),
        "warm_seconds": warm_seconds,
        "modes": modes,
        "hnsw_recall_at_10": recall,
        "recall_queries": len(texts),
    }


def _line(mode: dict[str, Any]) -> str:
    s, c = mode["sequential"], mode["concurrent"]
    return (
        f"p50 {s['client_ms']['p50']:.1f} ms p99 {s['client_ms']['p99']:.1f} ms "
        f"MRR@10 {s['mrr_at_10']:.3f}; x{c['clients']}: {c['queries_per_second']:.1f} q/s "
        f"p50 {c['client_ms']['p50']:.1f} p99 {c['client_ms']['p99']:.1f} ms"
    )


def run(args: argparse.Namespace, work: Path) -> None:
    directory = args.cache_dir / f"corpus-v{corpus.FORMAT_VERSION}"
    description = orjson.loads((directory / "corpus.json").read_bytes())
    queries = description.pop("queries")
    held_out = [q for q in queries if q["half"] == "held_out"]
    warmup = [q["text"] for q in queries if q["half"] == "tuning"]
    model = vectors_.embedder(args.cache_dir)
    result: dict[str, Any] = {
        "corpus": description,
        "queries": {"held_out": len(held_out), "tuning": len(queries) - len(held_out)},
        "vectors": {"model": model.model_key, "borrow_rule": vectors_.RULE},
        "targets": TARGETS,
        "concurrent_seconds": CONCURRENT_SECONDS,
        "sizes": {},
    }
    if args.keep and args.output.exists():
        # Sizes measured by an earlier run (another process, so another table) are kept
        # beside the ones this run measures.
        result["sizes"] = orjson.loads(args.output.read_bytes())["sizes"]
    loaded = 0
    with (
        stack.backends(work / "data", durable=False) as backends,
        stack.model_servers(work, ("inference",)) as servers,
        stack.api_server(work, backends, servers["inference"].url) as api,
    ):
        urls = {"api": api.url, "inference": servers["inference"].url}
        pids = {
            "api": api.popen.pid,
            "inference": servers["inference"].popen.pid,
            "postgres": stack.postmaster_pid(work / "data" / "postgres"),
        }
        real = 0
        loaded_documents: set[str] = set()
        for size in sorted(args.sizes):
            before = loadavg()
            # Read per size: the embedder may still be adding real vectors to the cache.
            model = vectors_.embedder(args.cache_dir)
            donor_vectors = load.donors(directory, model)
            with psycopg.connect(search_corpus.conninfo(backends.database_url)) as connection:
                search_corpus.drop_search_indexes(connection)
                added = load.load_range(connection, directory, model, donor_vectors, loaded, size)
                index_seconds = search_corpus.build_search_indexes(connection)
            loaded_documents |= added.pop("document_ids")
            loaded += added["chunks_loaded"]
            real += added["real_vectors"]
            measured = measure(
                urls, pids, backends.database_url, warmup, held_out, loaded_documents
            )
            measured |= {
                "chunks": loaded,
                "real_vectors": real,
                "borrowed_vectors": loaded - real,
                "donor_vectors": len(donor_vectors),
                "copy_seconds_added": added["copy_seconds"],
                "index_build_seconds": index_seconds,
                "load_average_before": before,
                "load_average_after": loadavg(),
                "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
            # A corpus (or a chunk file still being written) shorter than the size is
            # measured at the chunks it holds, under that count.
            result["sizes"][str(min(size, loaded))] = measured
            write_result("real_scale", result | {"cpus": stack.role_cpus()}, args.output)
            print(
                f"{size}: {loaded} chunks, recall {measured['hnsw_recall_at_10']:.3f}", flush=True
            )
            if loaded < size:
                break  # the corpus ends here


def main() -> None:
    unwind_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache-dir", type=Path, default=corpus.default_cache_dir())
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "real_scale.json")
    parser.add_argument("--keep", action="store_true", help="keep the output's other sizes")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tandem-real-scale-") as tmp:
        run(args, Path(tmp))


if __name__ == "__main__":
    main()
