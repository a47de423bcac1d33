"""API key scopes: alone so that `tandem api-key create --scope` needs no SQLAlchemy."""

from __future__ import annotations

from enum import StrEnum


class Scope(StrEnum):
    SEARCH = "search"  # search and read what the user may see
    INGEST = "ingest"  # also upload, and manage the user's own sources and documents
    ADMIN = "admin"  # everything: users, groups, keys, all documents

    def allows(self, needed: Scope) -> bool:
        order = (Scope.SEARCH, Scope.INGEST, Scope.ADMIN)
        return order.index(self) >= order.index(needed)
