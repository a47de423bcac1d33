"""In-process ONNX compute floor, in its own process set up like the server it matches.

    python -m benchmarks.floor --role indexing --threads 2 --precision int8 --priority idle

Loads the same prepared model (same precision) with the same thread count and spinning
setting as `tandem.model_server.engine.load_engines`, and before ONNX Runtime starts any
thread takes the server's CPU set (`--cpus`, when the server is pinned) and CPU priority
(`--priority`, as `tandem.cpu.apply_priority` sets it for the server). It
times exactly the engine's work (tokenize, pad + run, L2-normalize) without HTTP, JSON or
the scheduler.

It stays up between measurements so the benchmark can alternate floor and HTTP rounds
(a shared machine's noise then hits both alike) without reloading the model: each stdin
line is a JSON request {"op": "queries" | "passages", "texts": [...], "max_seconds": s},
answered by one JSON line on stdout. End of input ends the process.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import orjson

from tandem.config import ModelCacheSettings
from tandem.cpu import CpuPriority, apply_priority, format_cpu_list, parse_cpu_list
from tandem.model_files import ModelKind, Precision, locate_prepared
from tandem.model_server.engine import l2_normalize
from tandem.model_server.onnx_model import OnnxModel, load_model

# The benchmark's requests ask for 512; the engine caps this at the model's max length.
REQUESTED_CONTEXT = 512
BATCH_SIZE = 64


class Floor:
    def __init__(self, model: OnnxModel) -> None:
        self.model = model
        self.limit = min(REQUESTED_CONTEXT, model.manifest.max_seq_length)
        self.warm: set[str] = set()

    def _embed(self, texts: list[str]) -> float:
        started = time.perf_counter()
        vectors = l2_normalize(self.model.run(self.model.tokenize(texts, self.limit)))
        elapsed = time.perf_counter() - started
        assert vectors.shape == (len(texts), self.model.manifest.dimensions)
        return elapsed

    def queries(self, queries: list[str], deadline: float) -> dict[str, object]:
        """Per-query latency, one query per forward pass, as a sequential client sees it;
        plus batches of 4 queries, the work a server does for 4 concurrent clients."""
        if "queries" not in self.warm:  # first runs allocate the arena for new shapes
            for text in queries[:20]:
                self._embed([text])
            self.warm.add("queries")
        single = [self._embed([text]) for text in queries if time.monotonic() < deadline]
        batch4 = [
            self._embed(queries[start : start + 4])
            for start in range(0, len(queries) - 3, 4)
            if time.monotonic() < deadline
        ]
        return {"single_seconds": single, "batch4_seconds": batch4}

    def passages(self, passages: list[str], deadline: float) -> dict[str, object]:
        """Fixed batches of 64 in input order through tokenize + run, as a batch job would."""
        if "passages" not in self.warm:
            self._embed(passages[:BATCH_SIZE])
            self.warm.add("passages")
        done = 0
        tokenize_seconds = 0.0
        run_seconds = 0.0
        for start in range(0, len(passages), BATCH_SIZE):
            if time.monotonic() > deadline:
                break
            batch = passages[start : start + BATCH_SIZE]
            t0 = time.perf_counter()
            items = self.model.tokenize(batch, self.limit)
            t1 = time.perf_counter()
            l2_normalize(self.model.run(items))
            tokenize_seconds += t1 - t0
            run_seconds += time.perf_counter() - t1
            done += len(batch)
        return {
            "passages": done,
            "seconds": tokenize_seconds + run_seconds,
            "run_seconds": run_seconds,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--role", choices=["inference", "indexing"], required=True)
    parser.add_argument("--cpus", default="", help='CPU list, e.g. "0" or "1-3"; "": all')
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--precision", choices=[p.value for p in Precision], default="fp32")
    parser.add_argument(
        "--priority", choices=[p.value for p in CpuPriority], default=CpuPriority.NORMAL.value
    )
    args = parser.parse_args()

    # Before the session exists: ONNX Runtime's pool threads inherit the mask and priority.
    if args.cpus:
        os.sched_setaffinity(0, parse_cpu_list(args.cpus))
    applied_priority = apply_priority(CpuPriority(args.priority))
    precision = Precision(args.precision)
    settings = ModelCacheSettings()
    directory, manifest = locate_prepared(
        settings.model_cache, settings.embedding_model, ModelKind.BI_ENCODER, precision=precision
    )
    # The engine spins only in the inference role; match it, or the floor is unfair.
    spinning = args.role == "inference"
    model = load_model(directory, manifest, args.threads, spinning=spinning, precision=precision)
    floor = Floor(model)
    identity = {
        "cpus": format_cpu_list(set(os.sched_getaffinity(0))),
        "threads": args.threads,
        "spinning": spinning,
        "precision": precision.value,
        "priority": applied_priority,
    }
    for line in sys.stdin:
        request = orjson.loads(line)
        deadline = time.monotonic() + float(request["max_seconds"])
        if request["op"] == "queries":
            result = floor.queries(request["texts"], deadline)
        else:
            result = floor.passages(request["texts"], deadline)
        sys.stdout.buffer.write(orjson.dumps(result | identity) + b"\n")
        sys.stdout.buffer.flush()


if __name__ == "__main__":
    main()
