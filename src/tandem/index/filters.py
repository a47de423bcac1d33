"""Search filters as SQL over the `chunks` row aliased `c`: the same clause restricts the
BM25 candidates (joined to each posting's chunk, tandem.index.bm25_sql.filter_join) and the
HNSW scan (its WHERE), so a filter narrows what each retriever ranks instead of dropping
hits after the fact."""

from __future__ import annotations

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


# A chunk's document's updated_at, probed by the documents' primary key per chunk the
# retriever looks at. Written as a scalar subquery rather than a join or EXISTS: the HNSW
# scan then stays an ordered index scan with one more filter per row (a semi-join may be
# planned as a hash join, which gives up the index order and ranks every chunk).
_DOCUMENT_UPDATED_AT = "(SELECT d.updated_at FROM documents d WHERE d.id = c.document_id)"


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
            clauses.append(f"c.path LIKE :filter_path_prefix ESCAPE '{_LIKE_ESCAPE}'")
            params["filter_path_prefix"] = like_prefix(filters.path_prefix)
        if filters.content_types:
            clauses.append("c.content_type = ANY(:filter_content_types)")
            params["filter_content_types"] = list(filters.content_types)
        if filters.updated_since is not None:
            clauses.append(f"{_DOCUMENT_UPDATED_AT} >= :filter_updated_since")
            params["filter_updated_since"] = filters.updated_since
        if filters.metadata:
            clauses.append("c.metadata @> CAST(:filter_metadata AS jsonb)")
            params["filter_metadata"] = orjson.dumps(filters.metadata).decode()
        return cls(" AND ".join(clauses), params)

    def where(self) -> str:
        return f" WHERE {self.sql}" if self.sql else ""
