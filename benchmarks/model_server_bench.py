"""Model-server benchmark: Tandem's two roles against their compute floor and a baseline.

    .venv/bin/python -m benchmarks.model_server_bench [--quick]

Starts every server as a real process on 127.0.0.1 and measures, in one run:
1. query latency over HTTP (sequential and concurrent) vs the in-process ONNX floor;
2. indexing throughput over HTTP (concurrent batches of 64) vs the in-process batch floor;
3. query latency on the inference server while the indexing server is saturated, vs idle;
4. the same three for a baseline (sentence-transformers in a FastAPI sync endpoint).
Tandem's servers are pinned as `tandem up` pins them; each floor runs in a process pinned
to the same CPUs with the same thread count. Results: benchmarks/results/model_server.json.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import orjson
from tokenizers import Tokenizer

from benchmarks import report
from benchmarks.corpus import make_passages, make_queries
from benchmarks.load import bulk_load, embed_body, query_latencies
from benchmarks.phases import Texts, Workload, index_section, query_section, saturation_section
from benchmarks.processes import (
    Server,
    baseline_argv,
    baseline_env,
    floor_worker,
    free_port,
    running,
    tandem_argv,
)
from tandem.config import ModelCacheSettings
from tandem.model_server import cpu
from tandem.model_server.manifest import TOKENIZER_FILE, ModelKind, locate_prepared

RESULTS_PATH = Path(__file__).parent / "results" / "model_server.json"
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
        max_seconds=60,
    ) as bulk:
        bulk.result(timeout=90)


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


def bench_tandem(texts: Texts, work: Workload, log_dir: Path, clock: Clock) -> dict[str, object]:
    inference_cpus, indexing_cpus = (
        cpu.format_cpu_list(cpus) for cpus in cpu.split_for_roles(cpu.affinity())
    )
    with contextlib.ExitStack() as stack:
        inference = stack.enter_context(
            running(
                "tandem-inference",
                tandem_argv("inference", free_port()),
                log_dir,
                {"TANDEM_CPUS": inference_cpus},
            )
        )
        indexing = stack.enter_context(
            running(
                "tandem-indexing",
                tandem_argv("indexing", free_port()),
                log_dir,
                {"TANDEM_CPUS": indexing_cpus},
            )
        )
        # The floors take the thread count each server chose (it caps to its CPU set).
        inference_threads = int(str(inference.wait_ready()["threads"]))
        indexing_threads = int(str(indexing.wait_ready()["threads"]))
        warm_up(inference, indexing, texts, work)
        with (
            clock.phase("tandem: queries vs floor"),
            floor_worker("inference", inference_cpus, inference_threads) as floor,
        ):
            queries = query_section(inference.url, texts, work, floor, metrics=True)
        with (
            clock.phase("tandem: indexing vs floor"),
            floor_worker("indexing", indexing_cpus, indexing_threads) as floor,
        ):
            indexed = index_section(indexing.url, texts, work, floor)
        with clock.phase("tandem: queries under saturated indexing"):
            saturation = saturation_section(inference.url, indexing.url, texts, work)
    return {
        "cpu_sets": {"inference": inference_cpus, "indexing": indexing_cpus},
        "threads": {"inference": inference_threads, "indexing": indexing_threads},
        **queries,
        **indexed,
        **saturation,
    }


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
    args = parser.parse_args()
    # SIGTERM unwinds like an error, so every `finally` stops the processes it started.
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    work = QUICK if args.quick else FULL
    output: Path = args.output or (QUICK_RESULTS_PATH if args.quick else RESULTS_PATH)
    started = time.monotonic()
    load_at_start = os.getloadavg()
    texts, described = make_texts(work)
    clock = Clock()
    with tempfile.TemporaryDirectory(prefix="tandem-bench-") as tmp:
        tandem = bench_tandem(texts, work, Path(tmp), clock)
        baseline = None if args.skip_baseline else bench_baseline(texts, work, Path(tmp), clock)
    results = report.assemble(
        machine=report.machine_info() | {"load_average_at_start": load_at_start},
        workload=asdict(work) | described | {"quick": args.quick},
        tandem=tandem,
        baseline=baseline,
        phases=clock.phases,
        elapsed_seconds=time.monotonic() - started,
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2) + b"\n")
    print(report.markdown_table(results))
    print(f"\nwrote {output} in {time.monotonic() - started:.0f}s")


if __name__ == "__main__":
    main()
