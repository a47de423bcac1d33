"""Search filters as SQL over the `chunks` row aliased `c`: the same clause restricts the
BM25 candidates (joined to each posting's chunk, tandem.index.bm25_sql.filter_join) and the
HNSW scan (its WHERE), so a filter narrows what each retriever ranks instead of dropping
hits after the fact."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import orjson

from tandem.index.protocol import SearchFilters

# The escape character of LIKE patterns (PostgreSQL's default, written out).
_LIKE_ESCAPE = "\\"


def like_prefix(prefix: str) -> str:
    """A LIKE pattern matching the strings that start with `prefix` taken literally:
    its `%`, `_` and escape characters are escaped."""
    escaped = (
        prefix.replace(_LIKE_ESCAPE, _LIKE_ESCAPE * 2)
        .replace("%", _LIKE_ESCAPE + "%")
        .replace("_", _LIKE_ESCAPE + "_")
    )
    return escaped + "%"


# A path prefix twice: on the chunk's own copy of its path (checked first, no lookup), and
# as a semi-join on its document's, so the planner can read a narrow prefix's documents
# through their (source, path) index (with the C collation `tandem up` creates; under
# another, LIKE cannot use it) and rank their chunks exactly. Measured at 100k chunks of
# random vectors and words, p50 semantic / keyword: a 0.05% prefix 10 / 100 ms with both
# against 508 / 227 ms on the chunk alone (whose filtered HNSW scan also gave up before
# finding all ten); a 5% prefix 62 / 47 against 200 / 51; a 50% one 52 / 37 against 55 / 41.
_PATH_PREFIX = (
    f"c.path LIKE :filter_path_prefix ESCAPE '{_LIKE_ESCAPE}' AND EXISTS (SELECT 1"
    " FROM documents d WHERE d.id = c.document_id"
    f" AND d.path LIKE :filter_path_prefix ESCAPE '{_LIKE_ESCAPE}')"
)
# The update time is the document's (chunks do not carry it): a semi-join, which the
# planner turns into whichever is cheaper for the filter's selectivity (measured, 10k
# chunks): for a few recent documents, those documents' chunks ranked exactly (2 ms);
# for most, the HNSW scan in order with a memoized primary-key probe per chunk (3-6 ms).
# A scalar subquery per chunk instead forces the latter always (45 ms for 5%).
_UPDATED_SINCE = (
    "EXISTS (SELECT 1 FROM documents d"
    " WHERE d.id = c.document_id AND d.updated_at >= :filter_updated_since)"
)


@dataclass(frozen=True, slots=True)
class ChunkFilter:
    """SQL over the `chunks` row aliased `c`, and its parameters; empty for no filter."""

    sql: str
    params: dict[str, object]

    @classmethod
    def build(cls, filters: SearchFilters) -> ChunkFilter:
        clauses: list[str] = []
        params: dict[str, object] = {}
        if filters.document_ids:
            clauses.append("c.document_id = ANY(:filter_document_ids)")
            params["filter_document_ids"] = list(filters.document_ids)
        if filters.sources:
            clauses.append("c.source = ANY(:filter_sources)")
            params["filter_sources"] = list(filters.sources)
        if filters.path_prefix:
            clauses.append(_PATH_PREFIX)
            params["filter_path_prefix"] = like_prefix(filters.path_prefix)
        if filters.content_types:
            clauses.append("c.content_type = ANY(:filter_content_types)")
            params["filter_content_types"] = list(filters.content_types)
        if filters.updated_since is not None:
            clauses.append(_UPDATED_SINCE)
            params["filter_updated_since"] = filters.updated_since
        if filters.metadata:
            clauses.append("c.metadata @> CAST(:filter_metadata AS jsonb)")
            params["filter_metadata"] = orjson.dumps(filters.metadata).decode()
        if filters.readers is not None:
            # Access, in the same SQL as every other filter: BM25's candidates and the
            # HNSW scan only ever see chunks the caller may read.
            clauses.append("c.readers && CAST(:filter_readers AS text[])")
            params["filter_readers"] = list(filters.readers)
        return cls(" AND ".join(clauses), params)

    def where(self) -> str:
        return f" WHERE {self.sql}" if self.sql else ""


# How long a filter's row estimate is reused. The planner's estimate moves only when
# ANALYZE (autovacuum) refreshes the statistics, so a minute's reuse picks the same BM25
# statement nearly always; a stale one picks the other exact-enough path, never a wrong
# result set (tandem.index.bm25.Bm25Scorer.ranked).
ESTIMATE_SECONDS = 60.0
MAX_ESTIMATES = 1024


class FilterEstimates:
    """The planner's row estimate per filter, kept ESTIMATE_SECONDS: a filtered keyword
    search asks EXPLAIN once a minute per filter (a user's readers, a source) instead of
    once per query, a round trip and a planning less. Thread-safe; one per index."""

    def __init__(
        self,
        seconds: float = ESTIMATE_SECONDS,
        capacity: int = MAX_ESTIMATES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._seconds = seconds
        self._capacity = capacity
        self._clock = clock
        self._found: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def rows(
        self, filter_sql: str, params: dict[str, object], estimate: Callable[[], float]
    ) -> float:
        """The estimate for `filter_sql` with `params`: kept, or `estimate()` (then kept)."""
        key = filter_sql + "\x00" + repr(sorted(params.items()))
        now = self._clock()
        with self._lock:
            kept = self._found.get(key)
            if kept is not None and now - kept[0] < self._seconds:
                self._found.move_to_end(key)
                return kept[1]
        rows = estimate()  # outside the lock: a round trip
        with self._lock:
            self._found[key] = (now, rows)
            self._found.move_to_end(key)
            while len(self._found) > self._capacity:
                self._found.popitem(last=False)
        return rows
