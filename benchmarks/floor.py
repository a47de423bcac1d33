"""In-process ONNX compute floor, run as its own process pinned like the server it matches.

    python -m benchmarks.floor --role inference --cpus 0 --threads 1 --input in.json --output out.json

Loads the same prepared model with the same thread count and spinning setting as
`tandem.model_server.engine.load_engines`, pins itself with `os.sched_setaffinity` before
ONNX Runtime starts any thread, and times exactly the engine's work (tokenize, pad + run,
L2-normalize) without HTTP, JSON or the scheduler. The input file holds {"texts": [...]}.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import orjson

from tandem.config import ModelCacheSettings
from tandem.model_server.cpu import format_cpu_list, parse_cpu_list
from tandem.model_server.engine import l2_normalize
from tandem.model_server.manifest import ModelKind, locate_prepared
from tandem.model_server.onnx_model import OnnxModel, load_model

# The benchmark's requests ask for 512; the engine caps this at the model's max length.
REQUESTED_CONTEXT = 512


def _embed(model: OnnxModel, texts: list[str], limit: int) -> float:
    started = time.perf_counter()
    vectors = l2_normalize(model.run(model.tokenize(texts, limit)))
    elapsed = time.perf_counter() - started
    assert vectors.shape == (len(texts), model.manifest.dimensions)
    return elapsed


def query_floor(
    model: OnnxModel, queries: list[str], passes: int, deadline: float
) -> dict[str, object]:
    """Per-query latency, one query per forward pass, as a sequential client sees it;
    plus batches of 4 queries, the work a server does for 4 concurrent clients."""
    limit = min(REQUESTED_CONTEXT, model.manifest.max_seq_length)
    for text in queries[:20]:  # warm up: first runs allocate the arena for new shapes
        _embed(model, [text], limit)
    single: list[float] = []
    for _ in range(passes):
        for text in queries:
            if time.monotonic() > deadline:
                break
            single.append(_embed(model, [text], limit))
    batch4: list[float] = []
    for start in range(0, len(queries) - 3, 4):
        if time.monotonic() > deadline:
            break
        batch4.append(_embed(model, queries[start : start + 4], limit))
    return {"single_seconds": single, "batch4_seconds": batch4}


def passage_floor(
    model: OnnxModel, passages: list[str], batch_size: int, deadline: float
) -> dict[str, object]:
    """Fixed batches in input order through tokenize + run, as a plain batch job would."""
    limit = min(REQUESTED_CONTEXT, model.manifest.max_seq_length)
    _embed(model, passages[:batch_size], limit)  # warm up at the full batch shape
    done = 0
    tokenize_seconds = 0.0
    run_seconds = 0.0
    started = time.perf_counter()
    for start in range(0, len(passages), batch_size):
        if time.monotonic() > deadline:
            break
        batch = passages[start : start + batch_size]
        t0 = time.perf_counter()
        items = model.tokenize(batch, limit)
        t1 = time.perf_counter()
        l2_normalize(model.run(items))
        t2 = time.perf_counter()
        tokenize_seconds += t1 - t0
        run_seconds += t2 - t1
        done += len(batch)
    return {
        "passages": done,
        "seconds": time.perf_counter() - started,
        "tokenize_seconds": tokenize_seconds,
        "run_seconds": run_seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--role", choices=["inference", "indexing"], required=True)
    parser.add_argument("--cpus", required=True, help='CPU list, e.g. "0" or "1-3"')
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--input", type=Path, required=True)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--passes", type=int, default=1, help="query passes (inference)")
    parser.add_argument("--batch-size", type=int, default=64, help="passages per batch")
    parser.add_argument("--max-seconds", type=float, default=300.0)
    args = parser.parse_args()

    cpus = parse_cpu_list(args.cpus)
    # Before the session exists: ONNX Runtime's pool threads inherit this mask.
    os.sched_setaffinity(0, cpus)
    deadline = time.monotonic() + args.max_seconds
    settings = ModelCacheSettings()
    directory, manifest = locate_prepared(
        settings.model_cache, settings.embedding_model, ModelKind.BI_ENCODER
    )
    # The engine spins only in the inference role; match it, or the floor is unfair.
    model = load_model(directory, manifest, args.threads, spinning=args.role == "inference")
    texts: list[str] = orjson.loads(args.input.read_bytes())["texts"]
    if args.role == "inference":
        result = query_floor(model, texts, args.passes, deadline)
    else:
        result = passage_floor(model, texts, args.batch_size, deadline)
    result |= {
        "cpus": format_cpu_list(set(os.sched_getaffinity(0))),
        "threads": args.threads,
        "spinning": args.role == "inference",
    }
    args.output.write_bytes(orjson.dumps(result))


if __name__ == "__main__":
    main()
