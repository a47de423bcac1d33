"""What access control costs: search for a user who may read 1% of the corpus against an
admin's (no reader filter), and HNSW recall@10 under that filter against unfiltered.

The corpus is search_latency's (benchmarks/search_corpus.py: real embeddings of generated
prose, loaded with COPY); 1% of its documents are shared with user 1, the rest with user
2. Both callers' queries run in-process on the index, interleaved query by query (the
machine is shared: paired, not back to back). Recall is measured against an exact scan
restricted the same way (`enable_indexscan` off).

    python -m benchmarks.access_latency [--chunks 100000] [--queries 200]

Writes benchmarks/results/access_latency.json.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from pgvector.psycopg import register_vector

from benchmarks import search_corpus as corpus
from benchmarks import tandem_stack as stack
from benchmarks.processes import unwind_on_sigterm
from benchmarks.results_io import summarize_ms, write_result
from benchmarks.search_latency import embed_queries, make_queries
from tandem.db.migrate import upgrade
from tandem.db.session import make_engine, make_session_factory
from tandem.index.fusion import Fusion
from tandem.index.postgres import PostgresIndex
from tandem.index.protocol import IndexQuery, SearchFilters, SearchMode
from tandem.model_files import FloatArray
from tandem.search.searcher import CANDIDATES

SHARE = 100  # one document in SHARE is the restricted user's
RESTRICTED = ("public", "u:1")
WARMUP = 10
LIMIT = 10


def share_documents(connection: psycopg.Connection[Any]) -> dict[str, int]:
    """1% of the documents (and their chunks) readable by user 1 only, the rest by user 2."""
    for table, key in (("documents", "id"), ("chunks", "document_id")):
        connection.execute(
            f"UPDATE {table} SET readers = CASE WHEN abs(hashtext({key})) % {SHARE} = 0 "
            "THEN ARRAY['u:1'] ELSE ARRAY['u:2'] END"
        )
    connection.commit()
    corpus.vacuum_for_search(connection, ("documents", "chunks"))
    row = connection.execute(
        "SELECT count(*) FILTER (WHERE readers && ARRAY['u:1']), count(*) FROM chunks"
    ).fetchone()
    assert row is not None
    return {"restricted_chunks": int(row[0]), "chunks": int(row[1])}


def paired_latency(
    index: PostgresIndex, queries: list[str], vectors: list[FloatArray], mode: SearchMode
) -> dict[str, Any]:
    seconds: dict[str, list[float]] = {"admin": [], "restricted": []}
    for n, (query, vector) in enumerate(zip(queries, vectors, strict=True)):
        given = None if mode is SearchMode.KEYWORD else vector
        order = ("admin", "restricted") if n % 2 else ("restricted", "admin")
        for who in order:
            readers = None if who == "admin" else RESTRICTED
            started = time.perf_counter()
            index.search(
                IndexQuery(
                    query,
                    given,
                    mode,
                    LIMIT,
                    candidates=CANDIDATES[mode],
                    filters=SearchFilters(readers=readers),
                )
            )
            if n >= WARMUP:
                seconds[who].append(time.perf_counter() - started)
    admin, restricted = summarize_ms(seconds["admin"]), summarize_ms(seconds["restricted"])
    return {
        "admin_ms": admin,
        "restricted_ms": restricted,
        "p50_ratio": restricted["p50"] / admin["p50"],
    }


def recall(
    index: PostgresIndex,
    database_url: str,
    queries: list[str],
    vectors: list[FloatArray],
    readers: tuple[str, ...] | None,
) -> float:
    """Share of the exact top 10 among the chunks `readers` may read that HNSW returns."""
    where = "" if readers is None else "WHERE readers && %s::text[]"
    found = total = 0
    with psycopg.connect(corpus.conninfo(database_url)) as connection:
        register_vector(connection)
        connection.execute("SET enable_indexscan = off")
        for query, vector in zip(queries, vectors, strict=True):
            params: tuple[Any, ...] = (np.asarray(vector), LIMIT)
            if readers is not None:
                params = (list(readers), *params)
            exact = connection.execute(
                f"SELECT document_id, ordinal FROM chunks {where} "
                "ORDER BY embedding <=> %s LIMIT %s",
                params,
            ).fetchall()
            hits = index.search(
                IndexQuery(
                    query,
                    vector,
                    SearchMode.SEMANTIC,
                    LIMIT,
                    group_by_document=False,
                    filters=SearchFilters(readers=readers),
                )
            )
            approximate = {(h.document_id, h.ordinal) for h in hits}
            found += sum(tuple(row) in approximate for row in exact)
            total += len(exact)
    return found / total if total else 0.0


def main() -> None:
    unwind_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="access-latency-") as scratch:
        work = Path(scratch)
        with (
            stack.backends(work / "data", durable=False) as backends,
            stack.model_servers(work, ("inference",)) as servers,
        ):
            engine = make_engine(backends.database_url, pool_size=2)
            upgrade(engine)
            pool = corpus.sentence_pool(40, 60, args.seed, 2)
            queries = make_queries(pool, args.queries + WARMUP, args.seed)
            vectors, _ = embed_queries(servers["inference"].url, queries)
            chunks = corpus.synthesize(
                pool, 0, args.chunks // corpus.CHUNKS_PER_DOCUMENT, args.seed
            )
            with psycopg.connect(corpus.conninfo(backends.database_url)) as connection:
                corpus.drop_search_indexes(connection)
                copy_seconds = corpus.copy_chunks(connection, chunks)
                corpus.build_search_indexes(connection)
                shared = share_documents(connection)
            sessions = make_session_factory(engine)
            index = PostgresIndex(sessions, Fusion.LINEAR)
            plain = PostgresIndex(sessions, Fusion.LINEAR, opening_weight=0.0)
            measured = queries[WARMUP:][:100], vectors[WARMUP:][:100]
            recalls = {
                "unfiltered": recall(plain, backends.database_url, *measured, None),
                "restricted": recall(plain, backends.database_url, *measured, RESTRICTED),
            }
            recalls["restricted_over_unfiltered"] = recalls["restricted"] / recalls["unfiltered"]
            result = {
                "corpus": shared | {"copy_seconds": copy_seconds},
                "modes": {
                    mode.value: paired_latency(index, queries, vectors, mode) for mode in SearchMode
                },
                "hnsw_recall_at_10": recalls,
            }
            engine.dispose()
    path = write_result("access_latency", result)
    print(path.read_text())


if __name__ == "__main__":
    main()
