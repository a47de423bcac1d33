"""End-to-end ingest throughput against the indexing server's own throughput, same run.

The pipeline: Markdown files uploaded to the API (POST /api/documents, batches of
UPLOAD_BATCH) -> Celery task per file via Redis -> worker (parse, chunk, embed on the
indexing model server, store in PostgreSQL). Timed from the first upload to the last
attempt's `finished_at`. The reference: the same chunk texts (the worker's own parser and
chunker, run here) posted straight to the indexing server's /encoder/bi-encoder-embed in
batches of 64 by CLIENTS concurrent clients, once before and once after the pipeline run
(the machine is shared; the mean is the reference). Target: pipeline >= 80% of it.

    python -m benchmarks.ingest_throughput [--quick]
"""

from __future__ import annotations

import argparse
import sys
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
from benchmarks.ingest_worker import PHASES_FILE_VARIABLE
from benchmarks.results_io import write_result
from tandem.config import WorkerSettings
from tandem.model_client import ModelClient
from tandem.schemas import TextType

TARGET_RATIO = 0.8
DIRECT_BATCH = 64
CLIENTS = 4
UPLOAD_BATCH = 20
PIPELINE_TIMEOUT = 900.0
POLL_SECONDS = 0.5


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


def pipeline_run(api_url: str, documents: list[GeneratedDocument]) -> dict[str, Any]:
    with httpx.Client(base_url=api_url, timeout=120.0) as client:
        started = time.time()
        attempt_ids = [
            _upload(client, documents[i : i + UPLOAD_BATCH])
            for i in range(0, len(documents), UPLOAD_BATCH)
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


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    documents = generate_documents(args.documents, seed=args.seed)
    texts = worker_chunk_texts(documents)
    phases_file = work / "item-phases.jsonl"
    worker_env = {PHASES_FILE_VARIABLE: str(phases_file)}
    if args.worker_concurrency:
        worker_env["TANDEM_WORKER_CONCURRENCY"] = str(args.worker_concurrency)
    worker_argv = [sys.executable, "-m", "benchmarks.ingest_worker"]
    with (
        stack.backends(work / "data", durable=not args.throwaway_db) as backends,
        stack.model_servers(work, ("inference", "indexing")) as servers,
        stack.api_server(work, backends, servers["inference"].url) as api,
        stack.worker(work, backends, servers["indexing"].url, worker_argv, worker_env) as worker,
    ):
        indexing_url = servers["indexing"].url
        direct_throughput(indexing_url, texts[: DIRECT_BATCH * 2], args.clients)  # warm-up
        before_run = direct_throughput(indexing_url, texts, args.clients)
        pids = {
            "worker": worker.popen.pid,
            "api": api.popen.pid,
            "indexing_server": servers["indexing"].popen.pid,
            "inference_server": servers["inference"].popen.pid,
            "postgres": stack.postmaster_pid(work / "data" / "postgres"),
        }
        cpu_before, metrics_before = _process_cpu(pids), stack.scrape_metrics(indexing_url)
        pipeline = pipeline_run(api.url, documents)
        cpu_after, metrics_after = _process_cpu(pids), stack.scrape_metrics(indexing_url)
        after_run = direct_throughput(indexing_url, texts, args.clients)
    wall = pipeline["seconds"]
    pipeline["server"] = analysis.server_summary(metrics_before, metrics_after, wall)
    pipeline["cpu"] = analysis.cpu_summary(cpu_before, cpu_after, wall)
    pipeline["worker_phases"] = analysis.phase_summary(
        analysis.read_items(phases_file), pipeline["started"], pipeline["ended"]
    )
    reference = (before_run["chunks_per_second"] + after_run["chunks_per_second"]) / 2
    ratio = pipeline["chunks_per_second"] / reference
    return {
        "benchmark": "ingest_throughput",
        "quick": args.quick,
        "documents": len(documents),
        "expected_chunks": len(texts),
        "worker_concurrency": args.worker_concurrency or WorkerSettings().concurrency,
        "cpus": stack.role_cpus(),
        "durable_postgres": not args.throwaway_db,
        "direct_before": before_run,
        "direct_after": after_run,
        "server_chunks_per_second": reference,
        "pipeline": pipeline,
        "ratio": ratio,
        "target_ratio": TARGET_RATIO,
        "target_met": ratio >= TARGET_RATIO,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="40 documents: a smoke run")
    parser.add_argument("--documents", type=int, default=None, help="default 240 (quick: 40)")
    parser.add_argument("--clients", type=int, default=CLIENTS)
    parser.add_argument("--worker-concurrency", type=int, default=None)
    parser.add_argument("--throwaway-db", action="store_true", help="PostgreSQL with fsync off")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    args.documents = args.documents or (40 if args.quick else 240)
    with tempfile.TemporaryDirectory(prefix="tandem-ingest-bench-") as tmp:
        result = run(args, Path(tmp))
    path = write_result("ingest_throughput", result, args.output)
    pipeline = result["pipeline"]
    print(
        f"server {result['server_chunks_per_second']:.1f} chunks/s; pipeline "
        f"{pipeline['chunks_per_second']:.1f} chunks/s, {pipeline['documents_per_second']:.2f}"
        f" docs/s; ratio {result['ratio']:.2f} (target {TARGET_RATIO}: "
        f"{'met' if result['target_met'] else 'missed'}) -> {path}"
    )


if __name__ == "__main__":
    main()
