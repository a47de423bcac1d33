"""What the BM25 statistics cost the write path: chunk writes with and without the triggers.

The same documents (generated prose, 5 chunks of ~200 tokens each, random unit vectors)
are written through `PostgresIndex.replace_document` into a durable throwaway PostgreSQL,
alternating blocks with the BM25 triggers enabled and disabled (the same database, so
both see the same table and index sizes), by WRITERS threads at once as workers would.
Reported: chunks/s each way, their ratio, and, for scale, what the indexing model server
embeds per second on this machine (from benchmarks/results/model_server.json if present):
the write path is a small share of an item's time, so the end-to-end cost is far smaller
than the write-path ratio.

    python -m benchmarks.bm25_write_cost [--documents N]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from sqlalchemy import text

from benchmarks.processes import unwind_on_sigterm
from benchmarks.prose import ProseModel
from benchmarks.results_io import RESULTS_DIR, write_result
from tandem.db import catalog
from tandem.db.migrate import upgrade
from tandem.db.session import make_engine, make_session_factory
from tandem.index.postgres import PostgresIndex
from tandem.index.protocol import IndexedChunk
from tandem.local.services.postgres import running_postgres

WRITERS = 4
BLOCK = 40  # documents per block; blocks alternate triggers on / off
TRIGGERS = ("inserted", "deleted", "updated", "truncated")


def documents(count: int, seed: int) -> list[tuple[str, str, list[str]]]:
    model = ProseModel.from_installed()
    rng = random.Random(seed)
    found = []
    for number in range(count):
        topic = rng.randrange(len(model.topics))
        bodies = [" ".join(model.sentences(rng, topic, rng.randint(6, 10))) for _ in range(5)]
        found.append((f"doc-{number:06d}", model.title(rng, topic), bodies))
    return found


def _set_triggers(engine: Any, enabled: bool) -> None:
    verb = "ENABLE" if enabled else "DISABLE"
    with engine.begin() as connection:
        for event in TRIGGERS:
            connection.execute(text(f"ALTER TABLE chunks {verb} TRIGGER bm25_chunks_{event}"))


def run(count: int, work: Path) -> dict[str, Any]:
    docs = documents(count, seed=3)
    noise = np.random.default_rng(3)
    seconds = {True: 0.0, False: 0.0}
    chunks = {True: 0, False: 0}
    with running_postgres(work / "pg", 55_000 + random.randrange(5_000)) as url:
        engine = make_engine(url, pool_size=WRITERS + 1)
        upgrade(engine)
        sessions = make_session_factory(engine)
        index = PostgresIndex(sessions)

        def write(doc: tuple[str, str, list[str]]) -> None:
            document_id, title, bodies = doc
            with sessions.begin() as session:
                info = catalog.DocumentInfo(document_id, title, "s", "text/plain", {}, "h", 1)
                catalog.upsert_document(session, info)
            vectors = noise.standard_normal((len(bodies), 384)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            rows = [
                IndexedChunk(i, body, title, "s", "text/plain", 200, vectors[i])
                for i, body in enumerate(bodies)
            ]
            index.replace_document(document_id, rows)

        with ThreadPoolExecutor(WRITERS) as pool:
            for block, start in enumerate(range(0, len(docs), BLOCK)):
                enabled = block % 2 == 0
                _set_triggers(engine, enabled)
                batch = docs[start : start + BLOCK]
                started = time.perf_counter()
                list(pool.map(write, batch))
                seconds[enabled] += time.perf_counter() - started
                chunks[enabled] += sum(len(d[2]) for d in batch)
        _set_triggers(engine, True)
        engine.dispose()
    with_rate = chunks[True] / seconds[True]
    without_rate = chunks[False] / seconds[False]
    result: dict[str, Any] = {
        "documents": count,
        "writers": WRITERS,
        "chunks_per_second_with_bm25": with_rate,
        "chunks_per_second_without_bm25": without_rate,
        "write_path_ratio": with_rate / without_rate,
    }
    server = RESULTS_DIR / "model_server.json"
    if server.exists():
        tandem = orjson.loads(server.read_bytes()).get("tandem", {})
        embedded = tandem.get("index_http", {}).get("per_second")
        if isinstance(embedded, int | float):
            # Per chunk: embed + write, with and without the statistics.
            per_chunk = 1 / embedded
            result["indexing_server_passages_per_second"] = embedded
            result["end_to_end_ratio_estimate"] = (per_chunk + 1 / without_rate) / (
                per_chunk + 1 / with_rate
            )
    return result


def main() -> None:
    unwind_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--documents", type=int, default=400)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tandem-bm25-write-") as tmp:
        result = run(args.documents, Path(tmp))
    print(
        f"chunks/s with BM25 {result['chunks_per_second_with_bm25']:.0f}, without"
        f" {result['chunks_per_second_without_bm25']:.0f}: ratio {result['write_path_ratio']:.2f}"
    )
    print(f"-> {write_result('bm25_write_cost', result, args.output)}")


if __name__ == "__main__":
    main()
