"""Where each search millisecond goes (issue 20): every stage's time from the API's
`Server-Timing` header, per mode, before and after a change, side by side in one run.

Two API servers run against one PostgreSQL and one inference server: "before" from a git
revision of this repository (extracted to a scratch directory), "after" from the working
tree. Each query goes to both, the order alternating from one query to the next, so both
see the same machine load and neither always finds the other's pages in the cache. The
corpus is search_latency's (benchmarks/search_corpus.py: real embeddings of generated
prose, loaded with COPY, the migration's indexes built after). Then CONCURRENT_CLIENTS
clients at once, hybrid, on each server in turn (twice, ABAB): queries per second.

    python -m benchmarks.search_breakdown --before REV [--chunks 100000] [--queries 200]

Writes benchmarks/results/search_breakdown.json.
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psycopg

from benchmarks import search_corpus as corpus
from benchmarks import tandem_stack as stack
from benchmarks.processes import unwind_on_sigterm
from benchmarks.results_io import summarize_ms, write_result
from benchmarks.search_latency import make_queries
from tandem.db.migrate import upgrade
from tandem.db.session import make_engine

ROOT = Path(__file__).parent.parent
SIDES = ("before", "after")
WARMUP = 10
CONCURRENT_CLIENTS = 4
# Request bodies besides the query. "keyword, filtered": a filter that leaves every chunk
# (the source), so the only difference from plain keyword is what a filter costs.
VARIANTS: dict[str, dict[str, Any]] = {
    "keyword": {"mode": "keyword"},
    "semantic": {"mode": "semantic"},
    "hybrid": {"mode": "hybrid"},
    "keyword, filtered": {"mode": "keyword", "filters": {"sources": ["upload"]}},
    "hybrid, filtered": {"mode": "hybrid", "filters": {"sources": ["upload"]}},
}


def extract_revision(revision: str, target: Path) -> str:
    """The repository at `revision` in `target`; returns the full commit id."""
    commit = subprocess.run(
        ["git", "rev-parse", revision], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.strip()
    archive = subprocess.run(
        ["git", "archive", "--format=tar", commit, "src"], cwd=ROOT, check=True, capture_output=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")
    return commit


def parse_server_timing(header: str) -> dict[str, float]:
    """{stage: milliseconds} of a Server-Timing header."""
    stages: dict[str, float] = {}
    for part in header.split(","):
        name, _, duration = part.strip().partition(";dur=")
        stages[name] = float(duration)
    return stages


def summarize_stages(by_stage: dict[str, list[float]], queries: int) -> dict[str, Any]:
    """Per stage: p50 where it ran, and mean over all `queries` (0 where a stage did not
    run: a second pool round, or another mode's stage)."""
    return {
        stage: {
            "p50": float(np.percentile(values, 50)),
            "mean": float(sum(values) / queries),
            "share_of_queries": len(values) / queries,
        }
        for stage, values in by_stage.items()
    }


def paired(
    clients: dict[str, httpx.Client], queries: list[str], extra: dict[str, Any]
) -> dict[str, Any]:
    """Each query on both servers, alternating which goes first; per side the client's
    latency and each stage's time."""
    seconds: dict[str, list[float]] = {s: [] for s in SIDES}
    stages: dict[str, dict[str, list[float]]] = {s: {} for s in SIDES}
    for number, query in enumerate(queries):
        order = SIDES if number % 2 else SIDES[::-1]
        for side in order:
            started = time.perf_counter()
            response = clients[side].post("/api/search", json={"query": query} | extra)
            elapsed = time.perf_counter() - started
            response.raise_for_status()
            if number < WARMUP:
                continue
            seconds[side].append(elapsed)
            for stage, ms in parse_server_timing(response.headers["server-timing"]).items():
                stages[side].setdefault(stage, []).append(ms)
    result: dict[str, Any] = {}
    for side in SIDES:
        result[side] = {
            "client_ms": summarize_ms(seconds[side]),
            "stages_ms": summarize_stages(stages[side], len(seconds[side])),
        }
    result["p50_after_over_before"] = (
        result["after"]["client_ms"]["p50"] / result["before"]["client_ms"]["p50"]
    )
    return result


def throughput(url: str, queries: list[str], extra: dict[str, Any]) -> dict[str, Any]:
    """CONCURRENT_CLIENTS clients at once, each on its own connection and share."""
    shares = [queries[i::CONCURRENT_CLIENTS] for i in range(CONCURRENT_CLIENTS)]

    def run(share: list[str]) -> list[float]:
        seconds = []
        with httpx.Client(base_url=url, timeout=30.0) as client:
            for query in share:
                started = time.perf_counter()
                client.post("/api/search", json={"query": query} | extra).raise_for_status()
                seconds.append(time.perf_counter() - started)
        return seconds

    with ThreadPoolExecutor(CONCURRENT_CLIENTS) as pool:
        started = time.perf_counter()
        parts = list(pool.map(run, shares))
        wall = time.perf_counter() - started
    seconds = [s for part in parts for s in part]
    return {"client_ms": summarize_ms(seconds), "queries_per_second": len(seconds) / wall}


@contextmanager
def two_api_servers(
    work: Path, backends: stack.Backends, inference_url: str, before_src: Path
) -> Iterator[dict[str, str]]:
    """{side: API URL}: "before" runs the code under `before_src`, "after" this tree's."""
    here = os.pathsep.join([str(ROOT / "src"), str(ROOT)])
    paths = {"before": os.pathsep.join([str(before_src), str(ROOT)]), "after": here}
    with ExitStack() as servers:
        urls = {}
        for side in SIDES:
            env = {"PYTHONPATH": paths[side]}
            api = stack.api_server(work, backends, inference_url, env, name=f"api-{side}")
            urls[side] = servers.enter_context(api).url
        yield urls


def measure(urls: dict[str, str], queries: list[str]) -> dict[str, Any]:
    clients = {side: httpx.Client(base_url=urls[side], timeout=30.0) for side in SIDES}
    try:
        variants = {name: paired(clients, queries, body) for name, body in VARIANTS.items()}
    finally:
        for client in clients.values():
            client.close()
    rounds: dict[str, list[dict[str, Any]]] = {side: [] for side in SIDES}
    for side in (*SIDES, *SIDES):  # ABAB: both see the machine's drift
        rounds[side].append(throughput(urls[side], queries[WARMUP:], VARIANTS["hybrid"]))
    return {"variants": variants, "hybrid_concurrent": rounds}


def main() -> None:
    unwind_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", required=True, help="git revision of the 'before' side")
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="search-breakdown-") as scratch:
        work = Path(scratch)
        commit = extract_revision(args.before, work / "before")
        with (
            stack.backends(work / "data", durable=False) as backends,
            stack.model_servers(work, ("inference",)) as servers,
        ):
            engine = make_engine(backends.database_url, pool_size=1)
            upgrade(engine)
            engine.dispose()
            pool = corpus.sentence_pool(40, 60, args.seed, 2)
            queries = make_queries(pool, args.queries + WARMUP, args.seed)
            chunks = corpus.synthesize(
                pool, 0, args.chunks // corpus.CHUNKS_PER_DOCUMENT, args.seed
            )
            with psycopg.connect(corpus.conninfo(backends.database_url)) as connection:
                corpus.drop_search_indexes(connection)
                copy_seconds = corpus.copy_chunks(connection, chunks)
                corpus.build_search_indexes(connection)
            inference = servers["inference"].url
            with two_api_servers(work, backends, inference, work / "before" / "src") as urls:
                measured = measure(urls, queries)
    result = measured | {
        "before_commit": commit,
        "chunks": len(chunks),
        "copy_seconds": copy_seconds,
        "queries_per_variant": args.queries,
        "concurrent_clients": CONCURRENT_CLIENTS,
    }
    path = write_result("search_breakdown", result, args.output)
    print(path.read_text())


if __name__ == "__main__":
    main()
