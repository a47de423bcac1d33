"""A chunk's semantic score blends its own cosine with its document's opening chunk's."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sqlalchemy.orm import Session, sessionmaker

from tandem.db import catalog
from tandem.index.postgres import PostgresIndex
from tandem.index.protocol import IndexedChunk, IndexHit, IndexQuery, SearchMode
from tandem.model_files import FloatArray

QUERY = 0  # the query vector is the first basis vector: cosine = first coordinate


def along(first: float, axis: int) -> FloatArray:
    """A unit vector with cosine `first` to the query, the rest along basis vector `axis`."""
    vector = np.zeros(384, dtype=np.float32)
    vector[QUERY] = first
    vector[axis] += math.sqrt(1 - first * first)
    return vector


# Document "deep": its opening is unrelated to the query, its second chunk is close.
# Document "about": its opening is about the query; its second chunk a little less close.
DOCUMENTS = {
    "about": [along(0.8, 1), along(0.6, 2)],
    "deep": [along(0.0, 1), along(0.7, 3)],
}


@pytest.fixture
def sessions(empty_database: sessionmaker[Session]) -> sessionmaker[Session]:
    factory = empty_database
    for document_id, vectors in DOCUMENTS.items():
        with factory.begin() as session:
            catalog.upsert_document(
                session,
                catalog.DocumentInfo(document_id, document_id, "s", "text/plain", {}, "h", 1),
            )
        PostgresIndex(factory).replace_document(
            document_id,
            [
                IndexedChunk(
                    ordinal=ordinal,
                    text=f"{document_id} part {ordinal}",
                    title=document_id,
                    path="s",
                    content_type="text/plain",
                    token_count=3,
                    embedding=vector,
                )
                for ordinal, vector in enumerate(vectors)
            ],
        )
    return factory


def semantic(sessions: sessionmaker[Session], opening_weight: float) -> list[IndexHit]:
    query = IndexQuery(
        text="unused",
        vector=along(1.0, 1),
        mode=SearchMode.SEMANTIC,
        limit=4,
        group_by_document=False,  # every chunk's score, not only each document's best
    )
    return PostgresIndex(sessions, opening_weight=opening_weight).search(query)


def test_each_chunk_alone_when_the_weight_is_zero(sessions: sessionmaker[Session]) -> None:
    hits = semantic(sessions, 0.0)
    assert [(h.document_id, h.ordinal) for h in hits] == [
        ("about", 0),
        ("deep", 1),
        ("about", 1),
        ("deep", 0),
    ]
    assert [h.score for h in hits] == pytest.approx([0.8, 0.7, 0.6, 0.0], abs=1e-6)


def test_a_passage_is_judged_with_its_documents_opening(sessions: sessionmaker[Session]) -> None:
    hits = semantic(sessions, 0.5)
    assert [(h.document_id, h.ordinal) for h in hits] == [
        ("about", 0),  # its own opening: 0.8
        ("about", 1),  # 0.5 * 0.6 + 0.5 * 0.8
        ("deep", 1),  # 0.5 * 0.7 + 0.5 * 0.0
        ("deep", 0),
    ]
    assert [h.score for h in hits] == pytest.approx([0.8, 0.7, 0.35, 0.0], abs=1e-6)
    assert [h.vector_score for h in hits] == [h.score for h in hits]


def test_hybrid_uses_the_same_semantic_scores(sessions: sessionmaker[Session]) -> None:
    query = IndexQuery(
        text="deep part",
        vector=along(1.0, 1),
        mode=SearchMode.HYBRID,
        limit=4,
        alpha=1.0,
        group_by_document=False,
    )
    hits = PostgresIndex(sessions, opening_weight=0.5).search(query)
    scores = {(h.document_id, h.ordinal): h.vector_score for h in hits}
    assert scores[("deep", 1)] == pytest.approx(0.35, abs=1e-6)
    assert scores[("about", 1)] == pytest.approx(0.7, abs=1e-6)
