"""No leaks, and no lost recall: random documents with random access lists, random users
and groups, on the real PostgreSQL index. For every user, in every mode, and in listing
and reads by id: what comes back is a subset of what the user may read, and the top 10 is
exactly the top 10 of the same ranking over the allowed documents alone (an unrestricted
search filtered to those documents' ids)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from tandem.db import catalog
from tandem.db.models import PUBLIC
from tandem.index.postgres import PostgresIndex
from tandem.index.protocol import IndexedChunk, IndexQuery, SearchFilters, SearchMode

WORDS = ("harbour", "lantern", "copper", "meadow", "falcon", "granite", "willow", "ember")
USERS = (1, 2, 3, 4)
GROUPS = (1, 2, 3)
TOKENS = (PUBLIC, *(f"u:{u}" for u in USERS), *(f"g:{g}" for g in GROUPS))


@dataclass(frozen=True)
class Corpus:
    documents: Sequence[tuple[str, tuple[str, ...], list[str]]]  # id, readers, chunk texts
    memberships: dict[int, tuple[int, ...]]  # user -> groups
    seed: int


@st.composite
def corpora(draw: st.DrawFn) -> Corpus:
    count = draw(st.integers(min_value=12, max_value=40))
    documents = []
    for n in range(count):
        readers = draw(st.sets(st.sampled_from(TOKENS), min_size=1, max_size=3))
        chunks = draw(
            st.lists(
                st.lists(st.sampled_from(WORDS), min_size=3, max_size=8).map(" ".join),
                min_size=1,
                max_size=3,
            )
        )
        documents.append((f"d{n}", tuple(sorted(readers)), chunks))
    memberships = {
        u: tuple(sorted(draw(st.sets(st.sampled_from(GROUPS), max_size=2)))) for u in USERS
    }
    return Corpus(documents, memberships, draw(st.integers(0, 2**16)))


def _vector(rng: np.random.Generator) -> np.ndarray:
    vector = rng.normal(size=384).astype(np.float32)
    return vector / np.linalg.norm(vector)


def _load(sessions: sessionmaker[Session], index: PostgresIndex, corpus: Corpus) -> None:
    with sessions.begin() as session:
        session.execute(text("TRUNCATE documents CASCADE"))
    rng = np.random.default_rng(corpus.seed)
    for document_id, readers, texts in corpus.documents:
        with sessions.begin() as session:
            catalog.upsert_document(
                session,
                catalog.DocumentInfo(
                    document_id,
                    document_id,
                    f"{document_id}.txt",
                    "text/plain",
                    {},
                    "h",
                    1,
                    len(texts),
                    readers=readers,
                ),
            )
        chunks = [
            IndexedChunk(
                ordinal=i,
                text=body,
                title=document_id,
                path=f"{document_id}.txt",
                content_type="text/plain",
                token_count=len(body.split()),
                embedding=_vector(rng),
                readers=readers,
            )
            for i, body in enumerate(texts)
        ]
        index.replace_document(document_id, chunks)


def _tokens(corpus: Corpus, user: int) -> tuple[str, ...]:
    return (PUBLIC, f"u:{user}", *(f"g:{g}" for g in corpus.memberships[user]))


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(corpus=corpora(), query=st.lists(st.sampled_from(WORDS), min_size=1, max_size=3))
def test_no_user_sees_more_than_allowed_or_less_than_the_allowed_top_ten(
    empty_database: sessionmaker[Session], corpus: Corpus, query: list[str]
) -> None:
    index = PostgresIndex(empty_database)
    _load(empty_database, index, corpus)
    vector = _vector(np.random.default_rng(corpus.seed + 1))
    words = " ".join(query)
    for user in USERS:
        tokens = _tokens(corpus, user)
        allowed = sorted(d for d, readers, _ in corpus.documents if set(readers) & set(tokens))
        for mode in SearchMode:
            for grouped in (True, False):
                seen = index.search(
                    IndexQuery(
                        words,
                        vector,
                        mode,
                        10,
                        filters=SearchFilters(readers=tokens),
                        group_by_document=grouped,
                    )
                )
                alone = index.search(
                    IndexQuery(
                        words,
                        vector,
                        mode,
                        10,
                        filters=SearchFilters(document_ids=allowed or ["none"]),
                        group_by_document=grouped,
                    )
                )
                assert {h.document_id for h in seen} <= set(allowed), (user, mode)
                assert [(h.document_id, h.ordinal) for h in seen] == [
                    (h.document_id, h.ordinal) for h in alone
                ], (user, mode, grouped)
        with empty_database() as session:
            listed, total = catalog.list_documents(session, offset=0, limit=200, readers=tokens)
            assert sorted(d.id for d in listed) == allowed and total == len(allowed)
            for document_id, _, _ in corpus.documents:
                found = catalog.get_document(session, document_id, tokens)
                assert (found is not None) == (document_id in allowed), (user, document_id)


def test_a_user_who_may_read_few_documents_still_gets_ten(
    empty_database: sessionmaker[Session],
) -> None:
    """Recall under a narrow filter: 12 of 300 documents are readable, and the 10 best of
    those come back in every mode, though unrestricted results would be all others'."""
    documents = [
        (f"d{n}", ("u:1",) if n % 25 == 0 else ("u:2",), ["harbour lantern copper " * (1 + n % 3)])
        for n in range(300)
    ]
    corpus = Corpus(documents, {u: () for u in USERS}, 7)
    index = PostgresIndex(empty_database)
    _load(empty_database, index, corpus)
    vector = _vector(np.random.default_rng(99))
    for mode in SearchMode:
        hits = index.search(
            IndexQuery("harbour", vector, mode, 10, filters=SearchFilters(readers=("u:1",)))
        )
        assert len(hits) == 10, mode
        assert all(int(h.document_id[1:]) % 25 == 0 for h in hits), mode
