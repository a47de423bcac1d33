"""End-to-end ingest throughput against the indexing server's own throughput, same run.

Two document profiles, one after the other on one stack: "short" (~100 tokens, one chunk
each) and "long" (~5k tokens, ~33 chunks). The pipeline: Markdown files uploaded to the
API (POST /api/documents, UPLOAD_FILES per request) -> stored items, "work" messages via
Redis -> worker (claims batches, parses, chunks, embeds on the indexing model server in
requests of up to 64 passages across documents, stores in PostgreSQL). Timed from the
first upload to the last attempt's `finished_at`. The reference: the same chunk texts (the
worker's own parser and chunker, run here) posted straight to the indexing server's
/encoder/bi-encoder-embed in batches of 64 by CLIENTS concurrent clients, once before and
once after the profile's pipeline run (the machine is shared; the mean is the reference).
Targets: short >= 100 documents/s and >= 0.8x the reference; long >= 0.85x.

    python -m benchmarks.ingest_throughput [--quick] [--profiles short,long]
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from benchmarks import ingest_analysis as analysis
from benchmarks import tandem_stack as stack
from benchmarks.ingest_corpus import GeneratedDocument, generate_documents, worker_chunk_texts
from benchmarks.ingest_worker import TIMINGS_FILE_VARIABLE, read_batches, stage_summary
from benchmarks.prose import ProseModel
from benchmarks.results_io import write_result
from tandem.config import WorkerSettings
from tandem.model_client import ModelClient
from tandem.model_schemas import TextType

TARGET_RATIO = {"short": 0.8, "long": 0.85}
TARGET_SHORT_DOCUMENTS_PER_SECOND = 100.0
DOCUMENTS = {"short": 2000, "long": 48}
QUICK_DOCUMENTS = {"short": 300, "long": 8}
UPLOAD_FILES = {"short": 100, "long": 8}
DIRECT_BATCH = 64
CLIENTS = 4
PIPELINE_TIMEOUT = 900.0
# Each poll serializes an attempt's items in the API (CPU it would otherwise not spend);
# the end time comes from the attempts' finished_at, not from when a poll saw it.
POLL_SECONDS = 2.0


def direct_throughput(url: str, texts: list[str], clients: int) -> dict[str, Any]:
    """`texts` in batches of 64 from `clients` threads, each its own ModelClient (the
    worker's client), straight to the indexing server."""
    batches: Iterator[list[str]] = iter(
        texts[i : i + DIRECT_BATCH] for i in range(0, len(texts), DIRECT_BATCH)
    )
    lock = threading.Lock()
    failures: list[BaseException] = []

    def client_loop() -> None:
        client = ModelClient(url, timeout=300.0, batch_size=DIRECT_BATCH)
        try:
            while not failures:
                with lock:
                    batch = next(batches, None)
                if batch is None:
                    return
                client.embed(batch, TextType.PASSAGE)
        except (httpx.HTTPError, RuntimeError) as exc:
            failures.append(exc)
        finally:
            client.close()

    threads = [threading.Thread(target=client_loop) for _ in range(clients)]
    before = stack.scrape_metrics(url)
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"direct embedding failed: {failures[0]!r}")
    return {
        "chunks": len(texts),
        "clients": clients,
        "seconds": seconds,
        "chunks_per_second": len(texts) / seconds,
        "server": analysis.server_summary(before, stack.scrape_metrics(url), seconds),
    }


def _upload(client: httpx.Client, documents: list[GeneratedDocument]) -> str:
    files = [("files", (d.filename, d.data, "text/markdown")) for d in documents]
    response = client.post("/api/documents", files=files)
    response.raise_for_status()
    return str(response.json()["attempt_id"])


def _wait_attempts(client: httpx.Client, attempt_ids: list[str]) -> list[dict[str, Any]]:
    pending, finished = list(attempt_ids), []
    deadline = time.monotonic() + PIPELINE_TIMEOUT
    while pending:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(pending)} attempts unfinished after {PIPELINE_TIMEOUT}s")
        body = client.get(f"/api/index-attempts/{pending[0]}").raise_for_status().json()
        if body["status"] in ("succeeded", "failed"):
            finished.append(body)
            pending.pop(0)
        else:
            time.sleep(POLL_SECONDS)
    return finished


def pipeline_run(
    api_url: str, documents: list[GeneratedDocument], upload_files: int
) -> dict[str, Any]:
    with httpx.Client(base_url=api_url, timeout=120.0) as client:
        started = time.time()
        attempt_ids = [
            _upload(client, documents[i : i + upload_files])
            for i in range(0, len(documents), upload_files)
        ]
        uploaded = time.time()
        attempts = _wait_attempts(client, attempt_ids)
    ended = max(datetime.fromisoformat(a["finished_at"]).timestamp() for a in attempts)
    seconds = ended - started
    chunks = sum(item["chunk_count"] for a in attempts for item in a["items"])
    return {
        "documents": len(documents),
        "failed_documents": sum(a["failed"] for a in attempts),
        "chunks": chunks,
        "upload_seconds": uploaded - started,
        "seconds": seconds,
        "documents_per_second": len(documents) / seconds,
        "chunks_per_second": chunks / seconds,
        "started": started,
        "ended": ended,
    }


def _process_cpu(pids: dict[str, int]) -> dict[str, float]:
    return {name: stack.process_tree_cpu_seconds(pid) for name, pid in pids.items()}


def profile_run(
    profile: str,
    documents: list[GeneratedDocument],
    urls: dict[str, str],
    pids: dict[str, int],
    timings_file: Path,
    clients: int,
) -> dict[str, Any]:
    texts = worker_chunk_texts(documents)
    indexing_url = urls["indexing"]
    before_run = direct_throughput(indexing_url, texts, clients)
    cpu_before, metrics_before = _process_cpu(pids), stack.scrape_metrics(indexing_url)
    pipeline = pipeline_run(urls["api"], documents, UPLOAD_FILES[profile])
    cpu_after, metrics_after = _process_cpu(pids), stack.scrape_metrics(indexing_url)
    after_run = direct_throughput(indexing_url, texts, clients)
    wall = pipeline["seconds"]
    pipeline["server"] = analysis.server_summary(metrics_before, metrics_after, wall)
    pipeline["cpu"] = analysis.cpu_summary(cpu_before, cpu_after, wall)
    batches = read_batches(timings_file, pipeline["started"], pipeline["ended"])
    pipeline["worker_stages"] = stage_summary(batches, pipeline["started"], pipeline["ended"])
    reference = (before_run["chunks_per_second"] + after_run["chunks_per_second"]) / 2
    ratio = pipeline["chunks_per_second"] / reference
    targets = {"ratio": TARGET_RATIO[profile]}
    met = ratio >= TARGET_RATIO[profile]
    if profile == "short":
        targets["documents_per_second"] = TARGET_SHORT_DOCUMENTS_PER_SECOND
        met = met and pipeline["documents_per_second"] >= TARGET_SHORT_DOCUMENTS_PER_SECOND
    return {
        "documents": len(documents),
        "expected_chunks": len(texts),
        "direct_before": before_run,
        "direct_after": after_run,
        "server_chunks_per_second": reference,
        "server_documents_per_second": reference * len(documents) / len(texts),
        "pipeline": pipeline,
        "ratio": ratio,
        "targets": targets,
        "targets_met": met,
    }


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    counts = QUICK_DOCUMENTS if args.quick else DOCUMENTS
    prose = ProseModel.from_installed()
    chosen = {"short": args.short_documents, "long": args.long_documents}
    corpora = {
        profile: generate_documents(
            chosen[profile] or counts[profile], seed=args.seed, profile=profile, model=prose
        )
        for profile in args.profiles
    }
    timings_file = work / "worker-batches.jsonl"
    worker_env = {TIMINGS_FILE_VARIABLE: str(timings_file)}
    if args.worker_concurrency:
        worker_env["TANDEM_WORKER_CONCURRENCY"] = str(args.worker_concurrency)
    with (
        stack.backends(work / "data", durable=not args.throwaway_db) as backends,
        stack.model_servers(work, ("inference", "indexing")) as servers,
        stack.api_server(work, backends, servers["inference"].url) as api,
        stack.worker(work, backends, servers["indexing"].url, None, worker_env) as worker,
    ):
        urls = {"api": api.url, "indexing": servers["indexing"].url}
        warm = worker_chunk_texts(next(iter(corpora.values()))[:DIRECT_BATCH])
        direct_throughput(urls["indexing"], warm, args.clients)
        pids = {
            "worker": worker.popen.pid,
            "api": api.popen.pid,
            "indexing_server": servers["indexing"].popen.pid,
            "inference_server": servers["inference"].popen.pid,
            "postgres": stack.postmaster_pid(work / "data" / "postgres"),
        }
        profiles = {
            profile: profile_run(profile, documents, urls, pids, timings_file, args.clients)
            for profile, documents in corpora.items()
        }
    return {
        "benchmark": "ingest_throughput",
        "quick": args.quick,
        "worker_concurrency": args.worker_concurrency or WorkerSettings().concurrency,
        "cpus": stack.role_cpus(),
        "durable_postgres": not args.throwaway_db,
        "profiles": profiles,
        "targets_met": all(p["targets_met"] for p in profiles.values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: fewer documents")
    parser.add_argument("--profiles", default="short,long", help="short, long or both")
    parser.add_argument("--short-documents", type=int, default=None)
    parser.add_argument("--long-documents", type=int, default=None)
    parser.add_argument("--clients", type=int, default=CLIENTS)
    parser.add_argument("--worker-concurrency", type=int, default=None)
    parser.add_argument("--throwaway-db", action="store_true", help="PostgreSQL with fsync off")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    args.profiles = [p for p in args.profiles.split(",") if p]
    with tempfile.TemporaryDirectory(prefix="tandem-ingest-bench-") as tmp:
        result = run(args, Path(tmp))
    path = write_result("ingest_throughput", result, args.output)
    for profile, outcome in result["profiles"].items():
        pipeline = outcome["pipeline"]
        print(
            f"{profile}: server {outcome['server_chunks_per_second']:.1f} chunks/s "
            f"({outcome['server_documents_per_second']:.1f} docs/s); pipeline "
            f"{pipeline['chunks_per_second']:.1f} chunks/s, "
            f"{pipeline['documents_per_second']:.1f} docs/s; ratio {outcome['ratio']:.2f} "
            f"(targets {outcome['targets']}: {'met' if outcome['targets_met'] else 'missed'})"
        )
    print(f"-> {path}")


if __name__ == "__main__":
    main()
