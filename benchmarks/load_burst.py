"""Bounded load: a burst of 10x the inference server's capacity, and the API beside it.

Starts on 127.0.0.1, as `tandem up` starts them: PostgreSQL, Redis, both model servers,
one worker (to index a small corpus, so searches have something to rank) and the API.
Then, side by side in one run:
1. searches alone for `--idle-seconds` (the reference);
2. waves of `10 x capacity` query items sent at once to the inference server (capacity:
   its queue bound, `/info` max_concurrent_requests), in requests of
   `--items-per-request`, for at most `--waves` waves or `--seconds`, while the same
   search clients keep asking the API, and a sampler reads the inference server's RSS.
Writes results/load_burst.json: the 429 share, p50/p99 of admitted (200) requests, the
Retry-After values, the RSS before and at its peak, and the API's answers under the burst
(statuses, degraded share, latency against the idle reference). Every request has a
timeout; a hang is counted as `timeout`, never waited out.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

from benchmarks.burst import (
    TIMEOUT_STATUS,
    Answer,
    BurstOutcome,
    run_burst,
    run_searches,
    run_sequential_embeds,
)
from benchmarks.corpus import make_passages, make_queries
from benchmarks.processes import unwind_on_sigterm
from benchmarks.results_io import RESULTS_DIR, summarize_ms, write_result
from benchmarks.tandem_stack import api_server, backends, model_servers, worker

MB = 1024 * 1024


def _index_corpus(api_url: str, documents: int, timeout: float = 300.0) -> dict[str, Any]:
    passages = make_passages(documents, seed=3)
    body = {
        "documents": [
            {"id": f"doc-{n:04d}", "title": f"Note {n}", "text": text}
            for n, text in enumerate(passages)
        ]
    }
    accepted = httpx.post(f"{api_url}/api/documents/batch", json=body, timeout=120)
    accepted.raise_for_status()
    attempt_id = accepted.json()["attempt_id"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        attempt: dict[str, Any] = httpx.get(
            f"{api_url}/api/index-attempts/{attempt_id}", timeout=30
        ).json()
        if attempt["status"] in ("succeeded", "failed"):
            return attempt
        time.sleep(1.0)
    raise RuntimeError(f"the corpus was not indexed within {timeout:.0f} s")


def _statuses(answers: list[Answer]) -> dict[str, int]:
    named = Counter("timeout" if a.status == TIMEOUT_STATUS else str(a.status) for a in answers)
    return dict(sorted(named.items()))


def _search_summary(answers: list[Answer]) -> dict[str, Any]:
    answered = [a for a in answers if a.status == 200]
    degraded = sum(bool(a.degraded) for a in answered)
    return {
        "requests": len(answers),
        "statuses": _statuses(answers),
        "server_errors": sum(a.status >= 500 for a in answers),
        "timeouts": sum(a.status == TIMEOUT_STATUS for a in answers),
        "degraded": degraded,
        "degraded_share": degraded / len(answered) if answered else None,
        "latency_ms_200": summarize_ms([a.seconds for a in answered]),
    }


def summarize(burst: BurstOutcome, idle: list[Answer], sequential: list[Answer]) -> dict[str, Any]:
    embeds = burst.embeds
    admitted = [a.seconds for a in embeds if a.status == 200]
    alone = summarize_ms([a.seconds for a in sequential if a.status == 200])
    admitted_ms = summarize_ms(admitted)
    refused = [a for a in embeds if a.status == 429]
    idle_summary = _search_summary(idle)
    burst_summary = _search_summary(burst.searches)
    idle_p99 = idle_summary["latency_ms_200"].get("p99")
    burst_p99 = burst_summary["latency_ms_200"].get("p99")
    return {
        "inference": {
            "capacity_items": burst.capacity,
            "items_per_request": burst.items_per_request,
            "requests_per_wave": len(embeds) // max(burst.waves, 1),
            "waves": burst.waves,
            "requests": len(embeds),
            "statuses": _statuses(embeds),
            "share_429": len(refused) / len(embeds) if embeds else None,
            "retry_after_values": sorted({a.retry_after or "missing" for a in refused}),
            "server_errors": sum(a.status >= 500 for a in embeds),
            "latency_ms_admitted": admitted_ms,
            "latency_ms_one_at_a_time": alone,
            "admitted_p99_over_one_at_a_time_p99": (
                admitted_ms["p99"] / alone["p99"] if admitted_ms and alone else None
            ),
            "items_admitted_per_second": len(admitted)
            * burst.items_per_request
            / burst.wall_seconds,
            "wall_seconds": round(burst.wall_seconds, 2),
            "server_cpu_seconds": round(burst.server_cpu_seconds, 2),
            "client_cpu_seconds": round(burst.client_cpu_seconds, 2),
            "latency_ms_refused": summarize_ms([a.seconds for a in refused]),
            "rss_before_mb": round(burst.rss_before_bytes / MB, 1),
            "rss_peak_mb": round(burst.rss_peak_bytes / MB, 1),
            "rss_growth_mb": round((burst.rss_peak_bytes - burst.rss_before_bytes) / MB, 1),
        },
        "api_search": {
            "idle": idle_summary,
            "under_burst": burst_summary,
            "p99_under_burst_over_idle": burst_p99 / idle_p99 if idle_p99 and burst_p99 else None,
        },
    }


def main() -> None:
    unwind_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items-per-request", type=int, default=32)
    parser.add_argument("--waves", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--search-clients", type=int, default=8)
    parser.add_argument("--documents", type=int, default=300)
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "load_burst.json")
    args = parser.parse_args()
    queries = make_queries(400)
    with ExitStack() as stack:
        work_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="load-burst-")))
        log_dir = work_dir / "logs"
        log_dir.mkdir()
        stores = stack.enter_context(backends(work_dir, durable=False))
        servers = stack.enter_context(model_servers(log_dir, ("inference", "indexing")))
        inference = servers["inference"]
        api = stack.enter_context(api_server(log_dir, stores, inference.url))
        with worker(log_dir, stores, servers["indexing"].url):
            corpus = _index_corpus(api.url, args.documents)
        started = time.monotonic()
        sequential = run_sequential_embeds(
            inference.url, queries, items_per_request=args.items_per_request, count=100
        )
        idle = run_searches(
            api.url, queries, clients=args.search_clients, seconds=args.idle_seconds
        )
        burst = run_burst(
            inference.url,
            inference.popen.pid,
            api.url,
            queries,
            items_per_request=args.items_per_request,
            max_waves=args.waves,
            max_seconds=args.seconds,
            search_clients=args.search_clients,
        )
        result = summarize(burst, idle, sequential) | {
            "corpus": {"documents": corpus["done"], "failed": corpus["failed"]},
            "search_clients": args.search_clients,
            "measured_seconds": round(time.monotonic() - started, 1),
        }
    path = write_result("load_burst", result, args.output)
    inference_result, search = result["inference"], result["api_search"]
    print(
        f"429 share {inference_result['share_429']:.3f}, admitted p99 "
        f"{inference_result['latency_ms_admitted'].get('p99', 0):.1f} ms, RSS "
        f"{inference_result['rss_before_mb']} -> {inference_result['rss_peak_mb']} MB; "
        f"API under burst {search['under_burst']['statuses']}, degraded share "
        f"{search['under_burst']['degraded_share']}; wrote {path}"
    )


if __name__ == "__main__":
    main()
