"""Search variants side by side, for benchmarks/search_latency.py: results by document
(the API's default) against every chunk (`group_by_document: false`), and filtered
searches (source, path prefix, updated since) against none.

Variants are measured in pairs on the same query, their order alternating from one query
to the next: both see the same machine load, and neither always finds the other's pages
in the cache.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import psycopg

from benchmarks import search_corpus as corpus
from benchmarks.results_io import summarize_ms
from tandem.index.postgres import PostgresIndex
from tandem.index.protocol import IndexQuery, SearchMode
from tandem.model_files import FloatArray
from tandem.search.searcher import CANDIDATES

# The first is the baseline: the others get their p50 and p99 as a ratio to it.
GROUPING = {"ungrouped": {"group_by_document": False}, "grouped": {}}
PAGE = 10  # results per page, as the API's default
# Documents doc-000000 to doc-000999: 5% of the documents at 100k chunks (50% at 10k).
PATH_PREFIX = "doc-000"
# Update times one day apart by document number (mod 1000); since day 950: 5% of them.
FIRST_DAY = "2025-01-01"
SINCE_DAY = 950
UPDATED_SINCE = "2027-08-09T00:00:00Z"  # FIRST_DAY + 950 days
FILTERS: dict[str, dict[str, Any]] = {
    "none": {},
    "source (every chunk)": {"sources": ["upload"]},
    "path prefix (5% at 100k)": {"path_prefix": PATH_PREFIX},
    "updated since (5%)": {"updated_since": UPDATED_SINCE},
}


def spread_update_times(connection: psycopg.Connection[Any]) -> dict[str, float]:
    """Give documents update times one day apart (by number, mod 1000) and return each
    filter's share of the chunks."""
    connection.execute(
        "UPDATE documents SET updated_at = CAST(%s AS timestamptz)"
        " + (CAST(substr(id, 5) AS integer) %% 1000) * interval '1 day'",
        (FIRST_DAY,),
    )
    connection.commit()
    corpus.vacuum_for_search(connection, ("documents",))
    row = connection.execute(
        "SELECT count(*),"
        " count(*) FILTER (WHERE c.path LIKE %s),"
        " count(*) FILTER (WHERE d.updated_at >= CAST(%s AS timestamptz))"
        " FROM chunks c JOIN documents d ON d.id = c.document_id",
        (PATH_PREFIX + "%", UPDATED_SINCE),
    ).fetchone()
    assert row is not None
    total, prefixed, recent = (int(v) for v in row)
    return {
        "none": 1.0,
        "source (every chunk)": 1.0,
        "path prefix (5% at 100k)": prefixed / total,
        "updated since (5%)": recent / total,
    }


def paired_api_latency(
    api_url: str,
    queries: list[str],
    mode: SearchMode,
    variants: dict[str, dict[str, Any]],
    warmup: int,
) -> dict[str, Any]:
    """Each query once per variant (extra request fields), the order rotating per query;
    client-side latency per variant, and each variant's p50 and p99 over the first's."""
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    empty = dict.fromkeys(variants, 0)
    names = list(variants)
    with httpx.Client(base_url=api_url, timeout=60.0) as client:
        for number, query in enumerate(queries):
            shift = number % len(names)
            for name in names[shift:] + names[:shift]:
                body = {"query": query, "mode": mode.value, "limit": PAGE} | variants[name]
                started = time.perf_counter()
                response = client.post("/api/search", json=body)
                elapsed = time.perf_counter() - started
                results = response.raise_for_status().json()["results"]
                if number >= warmup:
                    seconds[name].append(elapsed)
                    empty[name] += not results
    result: dict[str, Any] = {
        name: {"client_ms": summarize_ms(s), "empty_results": empty[name]}
        for name, s in seconds.items()
    }
    base = result[names[0]]["client_ms"]
    for name in names[1:]:
        ms = result[name]["client_ms"]
        result[name]["ratio_to_" + names[0]] = {q: ms[q] / base[q] for q in ("p50", "p99")}
    return result


def growth_share(
    index: PostgresIndex, queries: list[str], vectors: list[FloatArray], mode: SearchMode
) -> float:
    """Share of queries whose first pool (CANDIDATES per retriever, as the API asks) holds
    fewer documents than a page needs (PAGE + 1: the API asks one more to know whether a
    next page exists): those grouped searches ask the retrievers again for more. Counted
    over the pool's best CANDIDATES chunks (a hybrid pool may hold up to twice as many, so
    for hybrid this is an upper bound); asking for more would make the index grow it."""
    short = 0
    candidates = CANDIDATES[mode]
    for query, vector in zip(queries, vectors, strict=True):
        given = None if mode is SearchMode.KEYWORD else vector
        hits = index.search(
            IndexQuery(
                query,
                given,
                mode,
                limit=candidates,
                candidates=candidates,
                group_by_document=False,
            )
        )
        short += len({h.document_id for h in hits}) < PAGE + 1
    return short / len(queries) if queries else 0.0


def paired_index_latency(
    index: PostgresIndex,
    queries: list[str],
    vectors: list[FloatArray],
    mode: SearchMode,
    warmup: int,
) -> dict[str, Any]:
    """PostgresIndex.search alone (no HTTP, no query embedding), grouped and ungrouped in
    pairs as above, asked what the API asks for a first page."""
    seconds: dict[str, list[float]] = {"grouped": [], "ungrouped": []}
    for number, (query, vector) in enumerate(zip(queries, vectors, strict=True)):
        given = None if mode is SearchMode.KEYWORD else vector
        order = [True, False] if number % 2 == 0 else [False, True]
        for grouped in order:
            request = IndexQuery(
                query,
                given,
                mode,
                limit=PAGE + 1,
                candidates=CANDIDATES[mode],
                group_by_document=grouped,
            )
            started = time.perf_counter()
            index.search(request)
            if number >= warmup:
                seconds["grouped" if grouped else "ungrouped"].append(time.perf_counter() - started)
    result = {name: summarize_ms(s) for name, s in seconds.items()}
    return result | {
        "ratio": {q: result["grouped"][q] / result["ungrouped"][q] for q in ("p50", "p99")}
    }
