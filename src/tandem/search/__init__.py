"""Search as a library: the HTTP route, the CLI and the benchmarks all call `Searcher`."""

from tandem.search.searcher import InvalidQuery, Searcher, SearchQuery, SearchResult

__all__ = ["InvalidQuery", "SearchQuery", "SearchResult", "Searcher"]
