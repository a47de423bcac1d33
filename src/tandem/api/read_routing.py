"""The API's document index with reads routed to replicas (tandem.db.replicas).

Search and chunk reads run on the router's chosen replica (one retry on the next, then
the primary, if it fails); writes always on the primary. Routes keep using one
`DocumentIndex` and never learn where a read ran.
"""

from __future__ import annotations

from collections.abc import Sequence

from tandem.db.replicas import ReadRouter, ReadTarget
from tandem.index.fusion import Fusion
from tandem.index.postgres import PostgresIndex
from tandem.index.protocol import ChunkWriter, IndexedChunk, IndexHit, IndexQuery


class RoutedIndex:
    def __init__(self, router: ReadRouter, fusion: Fusion) -> None:
        self._router = router
        self._primary = PostgresIndex(router.primary.sessions, fusion)
        self._by_target = {t.name: PostgresIndex(t.sessions, fusion) for t in router.replicas}
        self._by_target[router.primary.name] = self._primary

    def _on(self, target: ReadTarget) -> PostgresIndex:
        return self._by_target[target.name]

    @property
    def writer(self) -> ChunkWriter:
        return self._primary.writer  # with the primary's sessions only

    def replace_document(self, document_id: str, chunks: Sequence[IndexedChunk]) -> None:
        self._primary.replace_document(document_id, chunks)

    def delete_document(self, document_id: str) -> int:
        return self._primary.delete_document(document_id)

    def search(self, query: IndexQuery) -> list[IndexHit]:
        return self._router.run(lambda target: self._on(target).search(query))

    def chunk_count(self, document_id: str | None = None) -> int:
        return self._router.run(lambda target: self._on(target).chunk_count(document_id))

    def close(self) -> None:
        for index in self._by_target.values():
            index.close()

    def chunks(self, document_id: str) -> list[IndexHit]:
        return self._router.run(lambda target: self._on(target).chunks(document_id))
