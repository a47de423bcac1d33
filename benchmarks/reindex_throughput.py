"""What `tandem reindex` costs beyond embedding: re-embedding stored chunks in place, held
against embedding the same texts alone on the same indexing server, side by side.

Documents of generated prose (5 chunks of ~200 tokens each, random starting vectors) are
written through the project's write path into a throwaway PostgreSQL (so the BM25
triggers hold postings for them); an indexing model server runs as `tandem up` starts it.
Then, in one run: the chunks' texts embedded alone (the floor: requests of 64, the same
document batches), a full reindex (`tandem.worker.reindex.Reindexer`: read, embed, one UPDATE per
batch, progress to Redis), and the floor again. Reported: chunks/s each way and the ratio
of the reindex to the mean floor.

    python -m benchmarks.reindex_throughput [--documents N]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from redis import Redis

from benchmarks.processes import unwind_on_sigterm
from benchmarks.prose import ProseModel
from benchmarks.results_io import write_result
from benchmarks.tandem_stack import backends, model_servers
from tandem.db import catalog
from tandem.db.migrate import upgrade
from tandem.db.session import make_engine, make_session_factory
from tandem.index.postgres import PostgresIndex
from tandem.index.protocol import IndexedChunk
from tandem.model_client.client import ModelClient
from tandem.wire.model import TextType
from tandem.worker.reindex import ProgressStore, Reindexer, plan_run, served_model

CHUNKS_PER_DOCUMENT = 5
DOCUMENTS_PER_BATCH = 16  # `tandem reindex`'s default


def _documents(count: int) -> list[tuple[str, str, list[str]]]:
    model = ProseModel.from_installed()
    rng = random.Random(5)
    found = []
    for number in range(count):
        topic = rng.randrange(len(model.topics))
        bodies = [
            " ".join(model.sentences(rng, topic, rng.randint(6, 10)))
            for _ in range(CHUNKS_PER_DOCUMENT)
        ]
        found.append((f"doc-{number:06d}", model.title(rng, topic), bodies))
    return found


def _floor_seconds(embedder: ModelClient, docs: list[tuple[str, str, list[str]]]) -> float:
    """Embedding the texts a reindex embeds, in its batches, and nothing else."""
    started = time.perf_counter()
    for start in range(0, len(docs), DOCUMENTS_PER_BATCH):
        texts = [
            f"{title}\n{body}"
            for _, title, bodies in docs[start : start + DOCUMENTS_PER_BATCH]
            for body in bodies
        ]
        embedder.embed(texts, TextType.PASSAGE)
    return time.perf_counter() - started


def run(count: int, work: Path) -> dict[str, Any]:
    docs = _documents(count)
    chunks = count * CHUNKS_PER_DOCUMENT
    noise = np.random.default_rng(5)
    with (
        backends(work, durable=False) as stores,
        model_servers(work, ("indexing",)) as servers,
    ):
        engine = make_engine(stores.database_url, pool_size=2)
        upgrade(engine)
        sessions = make_session_factory(engine)
        index = PostgresIndex(sessions)
        for document_id, title, bodies in docs:
            with sessions.begin() as session:
                info = catalog.DocumentInfo(document_id, title, "s", "text/plain", {}, "h", 1)
                catalog.upsert_document(session, info)
            vectors = noise.standard_normal((len(bodies), 384)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            index.replace_document(
                document_id,
                [
                    IndexedChunk(i, body, title, "s", "text/plain", 200, vectors[i])
                    for i, body in enumerate(bodies)
                ],
            )
        url = servers["indexing"].url
        embedder = ModelClient(url, timeout=300, batch_size=64)
        redis = Redis.from_url(stores.redis_url)
        try:
            _floor_seconds(embedder, docs[:DOCUMENTS_PER_BATCH])  # warm the server up
            floor_before = _floor_seconds(embedder, docs)
            reindexer = Reindexer(
                sessions, embedder, ProgressStore(redis), documents_per_batch=DOCUMENTS_PER_BATCH
            )
            started = time.perf_counter()
            done = reindexer.run(plan_run(None, served_model(url), restart=True))
            reindex_seconds = time.perf_counter() - started
            floor_after = _floor_seconds(embedder, docs)
        finally:
            embedder.close()
            redis.close()
            engine.dispose()
    assert done.chunks == chunks, (done.chunks, chunks)
    floor = (floor_before + floor_after) / 2
    return {
        "documents": count,
        "chunks": chunks,
        "documents_per_batch": DOCUMENTS_PER_BATCH,
        "precision": done.precision,
        "floor_chunks_per_second": [chunks / floor_before, chunks / floor_after],
        "reindex_chunks_per_second": chunks / reindex_seconds,
        "reindex_documents_per_second": count / reindex_seconds,
        "reindex_to_floor": floor / reindex_seconds,
    }


def main() -> None:
    unwind_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--documents", type=int, default=200)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tandem-reindex-") as tmp:
        result = run(args.documents, Path(tmp))
    floors = ", ".join(f"{v:.1f}" for v in result["floor_chunks_per_second"])
    print(
        f"reindex {result['reindex_chunks_per_second']:.1f} chunks/s "
        f"({result['reindex_documents_per_second']:.1f} documents/s); embedding alone "
        f"{floors} chunks/s: ratio {result['reindex_to_floor']:.2f}"
    )
    print(f"-> {write_result('reindex_throughput', result, args.output)}")


if __name__ == "__main__":
    main()
