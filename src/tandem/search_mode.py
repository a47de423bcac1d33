"""The search modes: shared by the index contract, the wire models and the CLI, alone so
that the CLI's `--mode` option imports neither SQLAlchemy nor numpy for it."""

from __future__ import annotations

from enum import StrEnum


class SearchMode(StrEnum):
    HYBRID = "hybrid"
    SEMANTIC = "semantic"
    KEYWORD = "keyword"
