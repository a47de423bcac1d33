"""Search as two versions of the API serve it, side by side on one stack: the same
PostgreSQL (real text, benchmarks/real_scale_corpus.py, one size), the same inference
server, two API servers, one of them running the code of another checkout (`--baseline`:
a directory with its `src/`, e.g. a `git worktree` of the commit before a change).

Each round measures both APIs in turn, in alternating order (A B, then B A, ...): held-out
queries one at a time (client p50 / p99), then CONCURRENT_CLIENTS clients for
CONCURRENT_SECONDS, with each process's CPU per query. Alternating spreads the machine's
drift over both; the result keeps every round and their medians.

    python -m benchmarks.search_before_after --baseline DIR [--size 100000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
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
from benchmarks.real_scale_run import _search, concurrent, warm
from benchmarks.results_io import RESULTS_DIR, summarize_ms, write_result
from tandem.index.protocol import SearchMode

SEQUENTIAL_QUERIES = 200


def sequential_ms(api_url: str, texts: list[str], mode: SearchMode) -> dict[str, float]:
    with httpx.Client(base_url=api_url, timeout=60.0) as client:
        return summarize_ms([_search(client, text, mode)[0] for text in texts])


def _round(
    urls: dict[str, str], pids: dict[str, dict[str, int]], texts: list[str], mode: SearchMode
) -> dict[str, Any]:
    return {
        name: {
            "sequential_ms": sequential_ms(url, texts[:SEQUENTIAL_QUERIES], mode),
            "concurrent": concurrent(url, texts, mode, pids[name]),
        }
        for name, url in urls.items()
    }


def _medians(rounds: list[dict[str, Any]], name: str) -> dict[str, Any]:
    def median(pick: Any) -> float:
        return float(statistics.median(pick(r["versions"][name]) for r in rounds))

    parts = rounds[0]["versions"][name]["concurrent"]["cpu_ms_per_query"]
    return {
        "sequential_p50_ms": median(lambda r: r["sequential_ms"]["p50"]),
        "sequential_p99_ms": median(lambda r: r["sequential_ms"]["p99"]),
        "queries_per_second": median(lambda r: r["concurrent"]["queries_per_second"]),
        "cpu_ms_per_query": {
            part: median(lambda r, p=part: r["concurrent"]["cpu_ms_per_query"][p]) for part in parts
        },
    }


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    directory = args.cache_dir / f"corpus-v{corpus.FORMAT_VERSION}"
    description = orjson.loads((directory / "corpus.json").read_bytes())
    queries = description.pop("queries")
    texts = [q["text"] for q in queries if q["half"] == "held_out"]
    warmup = [q["text"] for q in queries if q["half"] == "tuning"]
    mode = SearchMode(args.mode)
    baseline_env = {"PYTHONPATH": str(args.baseline.resolve() / "src")}
    with (
        stack.backends(work / "data", durable=False) as backends,
        stack.model_servers(work, ("inference",)) as servers,
        stack.api_server(work, backends, servers["inference"].url) as current,
        stack.api_server(
            work, backends, servers["inference"].url, baseline_env, name="api-baseline"
        ) as baseline,
    ):
        model = vectors_.embedder(args.cache_dir)
        with psycopg.connect(search_corpus.conninfo(backends.database_url)) as connection:
            search_corpus.drop_search_indexes(connection)
            added = load.load_range(
                connection, directory, model, load.donors(directory, model), 0, args.size
            )
            search_corpus.build_search_indexes(connection)
        postgres = stack.postmaster_pid(work / "data" / "postgres")
        inference = servers["inference"].popen.pid
        apis = {"baseline": baseline, "current": current}
        urls = {name: api.url for name, api in apis.items()}
        pids = {
            name: {"api": api.popen.pid, "postgres": postgres, "inference": inference}
            for name, api in apis.items()
        }
        for url in urls.values():
            warm(url, warmup)
        rounds = []
        for number in range(args.rounds):
            order = list(urls) if number % 2 == 0 else list(reversed(urls))
            measured = _round({n: urls[n] for n in order}, pids, texts, mode)
            rounds.append({"order": order, "versions": measured})
            print(f"round {number + 1}: " + "; ".join(_line(n, measured[n]) for n in order))
    medians = {name: _medians(rounds, name) for name in urls}
    return {
        "mode": mode.value,
        "chunks": added["chunks_loaded"],
        "baseline": args.label,
        "rounds": rounds,
        "medians": medians,
        "ratios_current_to_baseline": {
            key: medians["current"][key] / medians["baseline"][key]
            for key in ("sequential_p50_ms", "sequential_p99_ms", "queries_per_second")
        },
    }


def _line(name: str, measured: dict[str, Any]) -> str:
    c = measured["concurrent"]
    cpu = " ".join(f"{k} {v:.1f}" for k, v in c["cpu_ms_per_query"].items())
    return (
        f"{name} p50 {measured['sequential_ms']['p50']:.1f} ms, "
        f"x{c['clients']} {c['queries_per_second']:.1f} q/s (CPU ms/query: {cpu})"
    )


def main() -> None:
    unwind_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, required=True, help="a checkout with src/")
    parser.add_argument("--label", default="", help="what the baseline is (e.g. a commit)")
    parser.add_argument("--cache-dir", type=Path, default=corpus.default_cache_dir())
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mode", default=SearchMode.HYBRID.value)
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "search_before_after.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tandem-before-after-") as tmp:
        result = run(args, Path(tmp))
    write_result("search_before_after", result, args.output)


if __name__ == "__main__":
    main()
