"""End-to-end ingest throughput against the in-process embedding floor, same run, same texts.

Two document profiles on one stack: "short" (~100 tokens, about one chunk each) and
"long" (~5k tokens, ~33 chunks). The pipeline: Markdown files uploaded to the API (POST
/api/documents, UPLOAD_FILES per request) -> stored items, "work" messages via Redis ->
worker (claims batches, parses in its sandbox, chunks, embeds on the indexing model server
in requests of up to 64 passages across documents, stores in PostgreSQL). Timed from the
first upload to the last attempt's `finished_at`.

The reference is the floor: the same chunk texts (the worker's own parser and chunker, run
here) through the prepared int8 model in-process with 2 threads, set up like the indexing
server (benchmarks/floor.py: tokenize + forward + normalize, batches of 64, no HTTP), once
before and once after each pipeline round (the machine is shared; the mean is the floor).
Targets: short >= 0.8x the floor, long >= 0.85x.

With `--baseline DIR` (a source tree of the code before a change, e.g. `git archive`d),
each profile runs rounds of the baseline worker and of this tree's worker alternately
(ABBA), every round on fresh documents of the same profile, so before and after are
measured side by side. Each round records CPU ms per document of every process and of the
worker's stages (benchmarks/ingest_cpu.py).

    python -m benchmarks.ingest_throughput [--quick] [--profiles short,long] [--baseline DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from benchmarks import ingest_analysis as analysis
from benchmarks import ingest_cpu
from benchmarks import tandem_stack as stack
from benchmarks.ingest_corpus import GeneratedDocument, generate_documents, worker_chunk_texts
from benchmarks.ingest_worker import TIMINGS_FILE_VARIABLE, read_batches, stage_summary
from benchmarks.processes import FloorSetup, FloorWorker, floor_worker, unwind_on_sigterm
from benchmarks.prose import ProseModel
from benchmarks.results_io import write_result
from tandem.config import ModelServerSettings, WorkerSettings
from tandem.cpu import CpuPriority

TARGET_RATIO = {"short": 0.8, "long": 0.85}
DOCUMENTS = {"short": 1500, "long": 16}
QUICK_DOCUMENTS = {"short": 300, "long": 4}
UPLOAD_FILES = {"short": 100, "long": 8}
FLOOR_SECONDS = 30.0  # a rate: on a loaded machine the floor stops early
PIPELINE_TIMEOUT = 900.0
# Each poll serializes an attempt's items in the API (CPU it would otherwise not spend);
# the end time comes from the attempts' finished_at, not from when a poll saw it.
POLL_SECONDS = 2.0
VARIANTS = ("before", "after")


def floor_rate(floor: FloorWorker, texts: list[str]) -> dict[str, Any]:
    measured: dict[str, Any] = floor.measure("passages", texts, FLOOR_SECONDS)
    passages, seconds = int(measured["passages"]), float(measured["seconds"])
    return {
        "passages": passages,
        "seconds": seconds,
        "passages_per_second": passages / seconds,
        "forward_share": float(measured["run_seconds"]) / seconds,
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
    api_url: str, documents: list[GeneratedDocument], upload_files: int, api_pid: int
) -> dict[str, Any]:
    with httpx.Client(base_url=api_url, timeout=120.0) as client:
        started = time.time()
        api_cpu = stack.process_tree_cpu_seconds(api_pid)
        attempt_ids = [
            _upload(client, documents[i : i + upload_files])
            for i in range(0, len(documents), upload_files)
        ]
        uploaded = time.time()
        # The uploads come first and fast: the API's CPU until here is theirs (the
        # progress polls after it are the benchmark's, as `tandem ingest`'s would be).
        api_cpu = stack.process_tree_cpu_seconds(api_pid) - api_cpu
        attempts = _wait_attempts(client, attempt_ids)
    ended = max(datetime.fromisoformat(a["finished_at"]).timestamp() for a in attempts)
    seconds = ended - started
    chunks = sum(item["chunk_count"] for a in attempts for item in a["items"])
    return {
        "documents": len(documents),
        "failed_documents": sum(a["failed"] for a in attempts),
        "chunks": chunks,
        "upload_seconds": uploaded - started,
        "api_upload_cpu_ms_per_document": api_cpu / len(documents) * 1000,
        "seconds": seconds,
        "documents_per_second": len(documents) / seconds,
        "chunks_per_second": chunks / seconds,
        "started": started,
        "ended": ended,
    }


def _worker_argv(source: Path | None) -> tuple[list[str] | None, dict[str, str]]:
    """How to start the worker of a variant: this tree's, or the baseline tree's."""
    if source is None:
        return None, {}
    path = os.pathsep.join([str(source / "src"), str(source)])
    return [sys.executable, "-m", "tandem.cli", "worker"], {"PYTHONPATH": path}


def round_run(
    profile: str,
    documents: list[GeneratedDocument],
    setting: dict[str, Any],
    source: Path | None,
) -> dict[str, Any]:
    """Floor, the pipeline with this variant's worker, floor again."""
    texts = worker_chunk_texts(documents)
    floor_before = floor_rate(setting["floor"], texts)
    argv, env = _worker_argv(source)
    work: Path = setting["work"]
    timings_file = work / f"worker-batches-{time.time_ns()}.jsonl"
    env |= {TIMINGS_FILE_VARIABLE: str(timings_file)} | setting["worker_env"]
    urls = setting["urls"]
    database_url = setting["backends"].database_url
    trigger_before = ingest_cpu.trigger_ms(database_url)
    with stack.worker(work, setting["backends"], urls["indexing"], argv, env) as worker:
        pids = setting["pids"] | {"worker": worker.popen.pid}
        cpu_before, metrics_before = ingest_cpu.sample(pids), stack.scrape_metrics(urls["indexing"])
        pipeline = pipeline_run(urls["api"], documents, UPLOAD_FILES[profile], pids["api"])
        cpu_after, metrics_after = ingest_cpu.sample(pids), stack.scrape_metrics(urls["indexing"])
    trigger = ingest_cpu.trigger_ms(database_url) - trigger_before
    floor_after = floor_rate(setting["floor"], texts)
    wall, count = pipeline["seconds"], len(documents)
    pipeline["bm25_trigger_ms_per_document"] = trigger / count
    pipeline["server"] = analysis.server_summary(metrics_before, metrics_after, wall)
    pipeline["cpu"] = ingest_cpu.per_document(cpu_before, cpu_after, count, wall)
    batches = read_batches(timings_file, pipeline["started"], pipeline["ended"])
    pipeline["worker_stages"] = stage_summary(batches, pipeline["started"], pipeline["ended"])
    worker_cpu = cpu_after["worker"] - cpu_before["worker"]
    pipeline["worker_stage_cpu_ms_per_document"] = ingest_cpu.stage_cpu(batches, worker_cpu, count)
    floor = (floor_before["passages_per_second"] + floor_after["passages_per_second"]) / 2
    floor_documents = floor * count / len(texts)
    ratio = pipeline["documents_per_second"] / floor_documents
    return {
        "documents": count,
        "expected_chunks": len(texts),
        "floor_before": floor_before,
        "floor_after": floor_after,
        "floor_documents_per_second": floor_documents,
        "pipeline": pipeline,
        "ratio": ratio,
        "target_ratio": TARGET_RATIO[profile],
        "target_met": ratio >= TARGET_RATIO[profile],
        "load_average_1": os.getloadavg()[0],
    }


def _summary(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Per variant: the mean ratio, and the mean CPU ms per document of each process and
    worker stage over its rounds."""

    def mean(values: list[float]) -> float:
        return sum(values) / len(values)

    summary: dict[str, Any] = {}
    for variant in sorted({r["variant"] for r in rounds}):
        mine = [r for r in rounds if r["variant"] == variant]
        processes = sorted({p for r in mine for p in r["pipeline"]["cpu"]})
        staged = [r["pipeline"]["worker_stage_cpu_ms_per_document"] for r in mine]
        stages = sorted({s for table in staged for s in table})
        summary[variant] = {
            "rounds": len(mine),
            "ratio": mean([r["ratio"] for r in mine]),
            "documents_per_second": mean([r["pipeline"]["documents_per_second"] for r in mine]),
            "floor_documents_per_second": mean([r["floor_documents_per_second"] for r in mine]),
            "process_cpu_ms_per_document": {
                p: mean([r["pipeline"]["cpu"][p]["cpu_ms_per_document"] for r in mine])
                for p in processes
            }
            | {
                key: mean([r["pipeline"][f"{key}_ms_per_document"] for r in mine])
                for key in ("api_upload_cpu", "bm25_trigger")
            },
            "worker_stage_cpu_ms_per_document": {
                s: mean([table.get(s, 0.0) for table in staged]) for s in stages
            },
        }
    return summary


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    counts = QUICK_DOCUMENTS if args.quick else DOCUMENTS
    prose = ProseModel.from_installed()
    chosen = {"short": args.short_documents, "long": args.long_documents}
    order = ["before", "after", "after", "before"] if args.baseline else ["after"] * args.rounds
    worker_env = {}
    if args.worker_concurrency:
        worker_env["TANDEM_WORKER_CONCURRENCY"] = str(args.worker_concurrency)
    indexing = ModelServerSettings()
    # The floor runs at the indexing server's priority: `tandem up`'s (idle) unless asked.
    priority = args.indexing_priority or CpuPriority.IDLE.value
    overrides = {"indexing": {"TANDEM_CPU_PRIORITY": priority}} if args.indexing_priority else {}
    setup = FloorSetup("", 2, indexing.precision.value, priority)
    with (
        stack.backends(work / "data", durable=not args.throwaway_db) as backends,
        stack.model_servers(work, ("inference", "indexing"), overrides) as servers,
        stack.api_server(work, backends, servers["inference"].url) as api,
        floor_worker("indexing", setup) as floor,
    ):
        ingest_cpu.track_trigger_time(backends.database_url)
        setting = {
            "work": work,
            "backends": backends,
            "floor": floor,
            "worker_env": worker_env,
            "urls": {"api": api.url, "indexing": servers["indexing"].url},
            "pids": {
                "api": api.popen.pid,
                "indexing_server": servers["indexing"].popen.pid,
                "inference_server": servers["inference"].popen.pid,
                "postgres": stack.postmaster_pid(work / "data" / "postgres"),
            },
        }
        profiles: dict[str, Any] = {}
        for profile in args.profiles:
            rounds = []
            for number, variant in enumerate(order):
                documents = generate_documents(
                    chosen[profile] or counts[profile],
                    seed=args.seed + number,
                    profile=profile,
                    model=prose,
                    name_prefix=f"r{number}-",
                )
                source = args.baseline if variant == "before" else None
                outcome = round_run(profile, documents, setting, source)
                rounds.append({"variant": variant} | outcome)
                print(f"{profile} {variant}: ratio {outcome['ratio']:.2f}", flush=True)
            summary = _summary(rounds)
            profiles[profile] = {"rounds": rounds, "summary": summary}
    return {
        "benchmark": "ingest_throughput",
        "quick": args.quick,
        "worker_concurrency": args.worker_concurrency or WorkerSettings().concurrency,
        "cpus": stack.role_cpus(),
        "floor": {"threads": setup.threads, "precision": setup.precision, "priority": priority},
        "durable_postgres": not args.throwaway_db,
        "side_by_side": bool(args.baseline),
        "profiles": profiles,
        "targets_met": all(
            p["summary"]["after"]["ratio"] >= TARGET_RATIO[name] for name, p in profiles.items()
        ),
    }


def main() -> None:
    unwind_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: fewer documents")
    parser.add_argument("--profiles", default="short,long", help="short, long or both")
    parser.add_argument("--short-documents", type=int, default=None)
    parser.add_argument("--long-documents", type=int, default=None)
    parser.add_argument("--baseline", type=Path, default=None, help="source tree of 'before'")
    parser.add_argument("--rounds", type=int, default=2, help="rounds without a baseline")
    parser.add_argument("--worker-concurrency", type=int, default=None)
    parser.add_argument(
        "--indexing-priority",
        choices=[p.value for p in CpuPriority],
        default=None,
        help="the indexing server's and the floor's CPU priority (default: tandem up's)",
    )
    parser.add_argument("--throwaway-db", action="store_true", help="PostgreSQL with fsync off")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    args.profiles = [p for p in args.profiles.split(",") if p]
    with tempfile.TemporaryDirectory(prefix="tandem-ingest-bench-") as tmp:
        result = run(args, Path(tmp))
    path = write_result("ingest_throughput", result, args.output)
    for profile, outcome in result["profiles"].items():
        for variant, summary in outcome["summary"].items():
            print(
                f"{profile} {variant}: {summary['documents_per_second']:.1f} docs/s, floor "
                f"{summary['floor_documents_per_second']:.1f}, ratio {summary['ratio']:.2f}"
            )
    print(f"-> {path}")


if __name__ == "__main__":
    main()
