"""Model-server benchmark: Tandem's two roles against their compute floor and a baseline.

    .venv/bin/python -m benchmarks.model_server_bench [--quick]

Starts every server as a real process on 127.0.0.1 and measures, in one run:
1. query latency over HTTP (sequential and concurrent) vs the in-process ONNX floor;
2. indexing throughput over HTTP (concurrent batches of 64) vs the in-process batch floor;
3. query latency on the inference server while the indexing server is saturated, vs idle;
4. the same three for a baseline (sentence-transformers in a FastAPI sync endpoint).
Tandem's servers start with the environment `tandem up` gives them (shared CPUs, the
indexing server at the lowest CPU priority; `--pinned-too` adds a run pinned as
`tandem up --pin-cpus` pins them); each floor runs in its own process with the same CPU
set, CPU priority, thread count and precision as its server. Results:
benchmarks/results/model_server.json.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import orjson
from tokenizers import Tokenizer

from benchmarks import report
from benchmarks.corpus import make_passages, make_queries
from benchmarks.load import bulk_load, embed_body, query_latencies
from benchmarks.phases import Texts, Workload, index_section, query_section, saturation_section
from benchmarks.processes import (
    FloorSetup,
    Server,
    baseline_argv,
    baseline_env,
    floor_worker,
    free_port,
    running,
    tandem_argv,
    unwind_on_sigterm,
    wait_settled,
)
from tandem.config import ModelCacheSettings, ModelServerSettings
from tandem.cpu import CpuPriority
from tandem.local.stack import model_server_specs
from tandem.model_files import TOKENIZER_FILE, ModelKind, locate_prepared

RESULTS_PATH = Path(__file__).parent / "results" / "model_server.json"
WARM_UP_SECONDS = 300.0
# A smoke run never overwrites the full run's results.
QUICK_RESULTS_PATH = RESULTS_PATH.with_name("model_server_quick.json")

FULL = Workload(
    queries=200,
    rounds=3,
    passages=2000,
    index_rounds=4,
    floor_passages_per_round=256,
    baseline_passages=1024,
)
QUICK = Workload(
    queries=40,
    rounds=1,
    passages=128,
    index_rounds=1,
    floor_passages_per_round=64,
    baseline_passages=128,
    bulk_clients=2,
    saturated_passes=1,
    max_query_seconds=10.0,
    max_index_seconds=60.0,
    index_phase_seconds=60.0,
)


def warm_up(inference: Server, indexing: Server, texts: Texts, work: Workload) -> None:
    """A few requests of each shape, so no measurement pays a first-request cost."""
    query_latencies(inference.url, texts.queries[:20], passes=1, concurrency=4, max_seconds=30)
    with bulk_load(
        indexing.url,
        texts.passages,
        batch_size=work.batch_size,
        clients=1,
        max_batches=1,
        # The indexing server runs at the lowest CPU priority: on a busy shared machine
        # its first batch may wait long for an idle CPU.
        max_seconds=WARM_UP_SECONDS,
    ) as bulk:
        bulk.result(timeout=WARM_UP_SECONDS + 30)


class Clock:
    """Seconds per phase and the load average around it: how noisy the machine was."""

    def __init__(self) -> None:
        self.phases: dict[str, dict[str, object]] = {}

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        print(f"{name} ...", flush=True)
        started = time.monotonic()
        yield
        self.phases[name] = {
            "seconds": round(time.monotonic() - started, 1),
            "load_average_1min_after": os.getloadavg()[0],
        }


def _floor_setup(env: dict[str, str], threads: int, precision: str) -> FloorSetup:
    return FloorSetup(
        cpus=env.get("TANDEM_CPUS", ""),
        threads=threads,
        precision=precision,
        priority=env.get("TANDEM_CPU_PRIORITY", CpuPriority.NORMAL.value),
    )


def up_environments(pin_cpus: bool) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    """{role: the environment `tandem up` gives that model server}, and how each shares
    the CPUs: the benchmark starts the servers exactly as `tandem up` does."""
    specs, sharing = model_server_specs(ModelServerSettings(), pin_cpus=pin_cpus)
    return {spec.name.removesuffix("-model-server"): spec.env for spec in specs}, sharing


def bench_tandem(
    texts: Texts, work: Workload, log_dir: Path, clock: Clock, *, pin_cpus: bool = False
) -> dict[str, object]:
    environments, sharing = up_environments(pin_cpus)
    precision = ModelServerSettings().precision.value
    label = "tandem (pinned)" if pin_cpus else "tandem"
    with contextlib.ExitStack() as stack:
        inference = stack.enter_context(
            running(
                f"{label}-inference",
                tandem_argv("inference", free_port()),
                log_dir,
                environments["inference"],
            )
        )
        indexing = stack.enter_context(
            running(
                f"{label}-indexing",
                tandem_argv("indexing", free_port()),
                log_dir,
                environments["indexing"],
            )
        )
        # The floors take the thread count each server chose (by role, capped to its CPUs).
        inference_threads = int(str(inference.wait_ready()["threads"]))
        indexing_threads = int(str(indexing.wait_ready()["threads"]))
        setups = {
            "inference": _floor_setup(environments["inference"], inference_threads, precision),
            "indexing": _floor_setup(environments["indexing"], indexing_threads, precision),
        }
        warm_up(inference, indexing, texts, work)
        settled = wait_settled([inference.process.pid, indexing.process.pid])
        with (
            clock.phase(f"{label}: queries vs floor"),
            floor_worker("inference", setups["inference"]) as floor,
        ):
            queries = query_section(inference.url, texts, work, floor, metrics=True)
        with (
            clock.phase(f"{label}: indexing vs floor"),
            floor_worker("indexing", setups["indexing"]) as floor,
        ):
            indexed = index_section(indexing.url, texts, work, floor, indexing.process.pid)
        with clock.phase(f"{label}: queries under saturated indexing"):
            saturation = saturation_section(inference.url, indexing.url, texts, work)
    return {
        "cpu_sharing": sharing,
        "settled_after_warm_up_seconds": round(settled, 1),
        "precision": precision,
        "floor_setups": {role: asdict(setup) for role, setup in setups.items()},
        "threads": {"inference": inference_threads, "indexing": indexing_threads},
        **queries,
        **indexed,
        **saturation,
    }


def bench_inference_threads(
    texts: Texts, work: Workload, log_dir: Path, clock: Clock, threads: int
) -> dict[str, object]:
    """The inference server at another thread count (TANDEM_THREADS), beside the indexing
    server as `tandem up` starts it: idle and saturated query latency, and its floor."""
    environments, _ = up_environments(pin_cpus=False)
    precision = ModelServerSettings().precision.value
    inference_env = environments["inference"] | {"TANDEM_THREADS": str(threads)}
    with contextlib.ExitStack() as stack:
        inference = stack.enter_context(
            running(
                f"tandem-inference-{threads}t",
                tandem_argv("inference", free_port()),
                log_dir,
                inference_env,
            )
        )
        indexing = stack.enter_context(
            running(
                f"tandem-indexing-{threads}t",
                tandem_argv("indexing", free_port()),
                log_dir,
                environments["indexing"],
            )
        )
        inference.wait_ready()
        indexing.wait_ready()
        warm_up(inference, indexing, texts, work)
        wait_settled([inference.process.pid, indexing.process.pid])
        setup = _floor_setup(inference_env, threads, precision)
        with (
            clock.phase(f"tandem, inference {threads} thread(s): queries"),
            floor_worker("inference", setup) as floor,
        ):
            queries = query_section(inference.url, texts, work, floor, metrics=False)
        with clock.phase(f"tandem, inference {threads} thread(s): saturated"):
            saturation = saturation_section(inference.url, indexing.url, texts, work)
    keep = ("query_sequential", "query_concurrent", "query_floor")
    return {"threads": threads, **{k: queries[k] for k in keep}, **saturation}


def bench_baseline(texts: Texts, work: Workload, log_dir: Path, clock: Clock) -> dict[str, object]:
    with contextlib.ExitStack() as stack:
        inference = stack.enter_context(
            running(
                "baseline-inference",
                baseline_argv("inference", free_port()),
                log_dir,
                baseline_env(),
            )
        )
        indexing = stack.enter_context(
            running(
                "baseline-indexing", baseline_argv("indexing", free_port()), log_dir, baseline_env()
            )
        )
        inference.wait_ready()
        indexing.wait_ready()
        warm_up(inference, indexing, texts, work)
        with clock.phase("baseline: queries"):
            queries = query_section(inference.url, texts, work, None, metrics=False)
        with clock.phase("baseline: indexing"):
            prefix = Texts(texts.queries, texts.passages[: work.baseline_passages])
            indexed = index_section(indexing.url, prefix, work, None)
        with clock.phase("baseline: queries under saturated indexing"):
            saturation = saturation_section(inference.url, indexing.url, texts, work)
    return {"cpu_sets": "unpinned", **queries, **indexed, **saturation}


def issue_targets(tandem: dict[str, Any]) -> dict[str, dict[str, object]]:
    """The targets as issue 9 words them (the report's own table predates it)."""

    def ms(section: str, key: str) -> float:
        return float(tandem[section][key])

    floor_p50 = ms("query_floor", "p50_ms")
    query_limit = 1.3 * floor_p50 + 1.0
    index_ratio = float(tandem["index_http"]["per_second"]) / float(
        tandem["index_floor"]["per_second"]
    )
    saturated = ms("query_saturated", "p99_ms") / ms("query_idle", "p99_ms")
    targets: dict[str, dict[str, object]] = {
        "query_p50_within_1.3x_floor_plus_1ms": {
            "value_ms": round(ms("query_sequential", "p50_ms"), 3),
            "limit_ms": round(query_limit, 3),
            "met": ms("query_sequential", "p50_ms") <= query_limit,
        },
        "index_http_vs_floor_at_least_0.9": {
            "value": round(index_ratio, 3),
            "met": index_ratio >= 0.9,
        },
        "saturated_p99_vs_idle_at_most_1.5": {
            "value": round(saturated, 3),
            "met": saturated <= 1.5,
        },
    }
    per_cpu = tandem.get("index_per_cpu_second")
    if per_cpu:
        ratio = float(per_cpu["server_vs_floor"])
        targets["index_http_vs_floor_per_cpu_second_at_least_0.9"] = {
            "value": round(ratio, 3),
            "met": ratio >= 0.9,
        }
    return targets


def make_texts(work: Workload) -> tuple[Texts, dict[str, object]]:
    settings = ModelCacheSettings()
    directory, _ = locate_prepared(
        settings.model_cache, settings.embedding_model, ModelKind.BI_ENCODER
    )
    tokenizer = Tokenizer.from_file(str(directory / TOKENIZER_FILE))
    tokenizer.no_padding()
    tokenizer.no_truncation()

    def count(text: str) -> int:
        return len(tokenizer.encode(text).ids)  # with [CLS] and [SEP]

    texts = Texts(make_queries(work.queries, token_count=count), make_passages(work.passages))
    described = {
        "query_tokens": report.spread([count(q) for q in texts.queries]),
        "passage_words": report.spread([len(p.split()) for p in texts.passages]),
        "passage_tokens_before_truncation": report.spread([count(p) for p in texts.passages]),
        "sample_queries": texts.queries[:5],
        "query_request_bytes": len(embed_body(texts.queries[:1], "query")),
    }
    return texts, described


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts (~2 min smoke run)")
    parser.add_argument("--output", type=Path, help=f"default {RESULTS_PATH.name}")
    parser.add_argument("--skip-baseline", action="store_true", help="Tandem only")
    parser.add_argument(
        "--pinned-too",
        action="store_true",
        help="also run Tandem with each role pinned to its own CPUs (`tandem up --pin-cpus`)",
    )
    parser.add_argument(
        "--inference-threads",
        type=int,
        action="append",
        default=[],
        help="also measure queries with the inference server at this thread count",
    )
    args = parser.parse_args()
    unwind_on_sigterm()
    work = QUICK if args.quick else FULL
    output: Path = args.output or (QUICK_RESULTS_PATH if args.quick else RESULTS_PATH)
    started = time.monotonic()
    load_at_start = os.getloadavg()
    texts, described = make_texts(work)
    clock = Clock()
    with tempfile.TemporaryDirectory(prefix="tandem-bench-") as tmp:
        tandem = bench_tandem(texts, work, Path(tmp), clock)
        variants = [
            bench_inference_threads(texts, work, Path(tmp), clock, threads)
            for threads in args.inference_threads
        ]
        pinned = (
            bench_tandem(texts, work, Path(tmp), clock, pin_cpus=True) if args.pinned_too else None
        )
        baseline = None if args.skip_baseline else bench_baseline(texts, work, Path(tmp), clock)
    tandem["inference_thread_variants"] = variants
    tandem["pinned"] = pinned
    results = report.assemble(
        machine=report.machine_info() | {"load_average_at_start": load_at_start},
        workload=asdict(work) | described | {"quick": args.quick},
        tandem=tandem,
        baseline=baseline,
        phases=clock.phases,
        elapsed_seconds=time.monotonic() - started,
    )
    results["issue_targets"] = issue_targets(tandem)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2) + b"\n")
    print(report.markdown_table(results))
    print(f"\nwrote {output} in {time.monotonic() - started:.0f}s")


if __name__ == "__main__":
    main()
