"""BM25 keyword ranking in PostgreSQL: the math, the statistics under writes, the pruning."""

from __future__ import annotations

import math
import random
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from tandem.db import catalog
from tandem.index import bm25
from tandem.index.postgres import PostgresIndex
from tandem.index.protocol import IndexedChunk, IndexQuery, SearchMode

K1, B = 1.2, 0.75
TITLE_WEIGHT = 2.0  # migration 0002's default


def _vector(seed: int) -> np.ndarray:
    vector = np.random.default_rng(seed).normal(size=384).astype(np.float32)
    return vector / np.linalg.norm(vector)


class Corpus:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions
        self.index = PostgresIndex(sessions)

    def put(self, document_id: str, title: str, *bodies: str) -> None:
        with self.sessions.begin() as session:
            info = catalog.DocumentInfo(document_id, title, "s", "text/plain", {}, "h", 1)
            catalog.upsert_document(session, info)
        chunks = [
            IndexedChunk(i, body, title, "s", "text/plain", 1, _vector(hash(body) % 10_000))
            for i, body in enumerate(bodies)
        ]
        self.index.replace_document(document_id, chunks)

    def delete(self, document_id: str) -> None:
        with self.sessions.begin() as session:
            session.execute(text("DELETE FROM documents WHERE id = :id"), {"id": document_id})

    def keyword(self, query: str, limit: int = 10) -> tuple[list[str], list[float]]:
        """Documents and scores, best first."""
        hits = self.index.search(IndexQuery(query, None, SearchMode.KEYWORD, limit))
        return [h.document_id for h in hits], [h.score for h in hits]


@pytest.fixture
def corpus(empty_database: sessionmaker[Session]) -> Corpus:
    return Corpus(empty_database)


def assert_ranking(corpus: Corpus, query: str, documents: list[str], scores: list[float]) -> None:
    got_documents, got_scores = corpus.keyword(query)
    assert got_documents == documents
    assert got_scores == pytest.approx(scores)


def test_scores_match_a_hand_computed_example(corpus: Corpus) -> None:
    # Lexemes: alpha appl banana | beta banana cherri | gamma cherri x3 date.
    # Lengths (title words count twice): 2+3=5, 2+2=4, 2+4=6; N=3, average length 5.
    corpus.put("a", "Alpha", "apple banana apple")
    corpus.put("b", "Beta", "banana cherry")
    corpus.put("c", "Gamma", "cherry cherry cherry date")

    idf_once = math.log(1 + (3 - 1 + 0.5) / (1 + 0.5))  # a lexeme in one chunk of three
    idf_twice = math.log(1 + (3 - 2 + 0.5) / (2 + 0.5))
    # tf 2 in a chunk of average length: saturation without length normalisation.
    assert_ranking(corpus, "apple", ["a"], [idf_once * 2 * 2.2 / (2 + 1.2)])

    b = 2 * idf_twice * 2.2 / (1 + 1.2 * (0.25 + 0.75 * 4 / 5))  # shorter than average
    c = idf_twice * 3 * 2.2 / (3 + 1.2 * (0.25 + 0.75 * 6 / 5))  # tf 3 saturates
    a = idf_twice * 2.2 / (1 + 1.2)
    assert_ranking(corpus, "banana cherry", ["b", "c", "a"], [b, c, a])
    # A title occurrence counts TITLE_WEIGHT times.
    gamma = idf_once * TITLE_WEIGHT * 2.2 / (TITLE_WEIGHT + 1.2 * (0.25 + 0.75 * 6 / 5))
    assert_ranking(corpus, "gamma", ["c"], [gamma])


def test_a_rare_term_outranks_common_ones_and_a_title_match_a_body_match(
    corpus: Corpus,
) -> None:
    for i in range(20):
        corpus.put(f"common-{i}", "Notes", "the common common thing again")
    corpus.put("rare", "Notes", "a rare thing")
    assert corpus.keyword("common rare")[0][0] == "rare"

    corpus.put("titled", "Zebra", "stripes and grass")
    corpus.put("body", "Savanna", "a zebra in the grass")
    assert corpus.keyword("zebra")[0] == ["titled", "body"]


def _independent_statistics(session: Session) -> dict[str, object]:
    """What the statistics must be, computed from the chunks' text by another route."""
    frequencies: dict[str, int] = dict(
        session.execute(text("SELECT word, ndoc FROM ts_stat('SELECT tsv FROM chunks')")).all()
    )
    total = session.execute(
        text(
            "SELECT coalesce(sum(body + :w * title), 0), count(*) FROM ("
            " SELECT (SELECT coalesce(sum(cardinality(positions)), 0)"
            "         FROM unnest(to_tsvector('english', text))) AS body,"
            "        (SELECT coalesce(sum(cardinality(positions)), 0)"
            "         FROM unnest(to_tsvector('english', title))) AS title"
            " FROM chunks) AS lengths"
        ),
        {"w": TITLE_WEIGHT},
    ).one()
    postings = session.execute(text("SELECT coalesce(sum(length(tsv)), 0) FROM chunks")).scalar()
    return {"df": frequencies, "length": float(total[0]), "chunks": total[1], "postings": postings}


def _kept_statistics(session: Session) -> dict[str, object]:
    frequencies: dict[str, int] = dict(
        session.execute(text("SELECT lexeme, df FROM bm25_terms WHERE df > 0")).all()
    )
    chunks, length = session.execute(text("SELECT chunks, total_length FROM bm25_corpus")).one()
    postings = session.execute(text("SELECT count(*) FROM bm25_postings")).scalar()
    return {"df": frequencies, "length": float(length), "chunks": chunks, "postings": postings}


def assert_statistics_exact(corpus: Corpus) -> None:
    with corpus.sessions() as session:
        assert _kept_statistics(session) == _independent_statistics(session)


def test_statistics_stay_exact_through_reupload_delete_and_concurrent_writers(
    corpus: Corpus,
) -> None:
    corpus.put("one", "First document", "apples and pears", "pears and plums")
    corpus.put("two", "Second", "plums, plums and more plums")
    assert_statistics_exact(corpus)
    corpus.put("one", "First document, again", "only cherries now")  # re-upload
    assert_statistics_exact(corpus)
    corpus.delete("two")
    assert_statistics_exact(corpus)

    start = threading.Barrier(2)

    def writer(prefix: str) -> None:
        start.wait(timeout=30)
        for i in range(15):
            corpus.put(f"{prefix}-{i}", f"{prefix} title", f"shared words {prefix} {i}")

    with ThreadPoolExecutor(2) as pool:
        for future in [pool.submit(writer, prefix) for prefix in ("left", "right")]:
            future.result()  # re-raises a writer's error here
    assert_statistics_exact(corpus)
    with corpus.sessions.begin() as session:
        session.execute(text("TRUNCATE documents CASCADE"))
    assert_statistics_exact(corpus)
    with corpus.sessions() as session:
        assert _kept_statistics(session)["chunks"] == 0


def test_updates_keep_statistics_exact_and_new_embeddings_cost_nothing(corpus: Corpus) -> None:
    corpus.put("doc", "Updated", "first words here", "second words there")
    with corpus.sessions.begin() as session:
        session.execute(
            text("UPDATE chunks SET text = 'replaced words entirely' WHERE ordinal = 0")
        )
    assert_statistics_exact(corpus)
    assert corpus.keyword("replaced")[0] == ["doc"]
    assert corpus.keyword("first")[0] == []

    def statistics_row_version() -> str:
        with corpus.sessions() as session:
            return str(session.execute(text("SELECT xmin FROM bm25_corpus")).scalar_one())

    before = statistics_row_version()
    with corpus.sessions.begin() as session:  # what `tandem reindex` does
        session.execute(text("UPDATE chunks SET embedding = embedding"))
    assert statistics_row_version() == before
    assert_statistics_exact(corpus)


def test_pruned_top_k_equals_scoring_every_match(corpus: Corpus) -> None:
    rng = random.Random(5)
    # Zipf-like vocabulary: a few very common words, a long tail of rare ones.
    vocabulary = [f"word{n}" for n in range(400)]
    weights = [1 / (rank + 1) for rank in range(len(vocabulary))]
    for d in range(120):
        bodies = [" ".join(rng.choices(vocabulary, weights, k=rng.randint(5, 60)))]
        corpus.put(f"d{d}", " ".join(rng.choices(vocabulary, weights, k=2)), *bodies)
    exact_with_budget = 0
    with corpus.sessions() as session:
        for _ in range(60):
            query = " ".join(rng.choices(vocabulary, weights, k=rng.randint(1, 6)))
            prepared = bm25.prepare(session, query, bm25.Bm25Parameters())
            everything = bm25.Bm25Scorer(session, prepared).partial_scores(prepared.terms)
            expected = sorted(everything.items(), key=lambda cs: (-cs[1], cs[0]))[:10]
            # Every list read; the rarest lists only, bounds prune the rest; the rarest.
            for budget in (10**9, 150, 40):
                scorer = bm25.Bm25Scorer(session, prepared, budget=bm25.ReadBudget(budget))
                ranked = scorer.ranked(10)
                if budget == 10**9:
                    assert ranked.exact
                if not ranked.exact:  # sampled: checked in the next test
                    continue
                probed = sum(t.df for t in prepared.terms) > budget
                exact_with_budget += probed
                assert [c for c, _ in ranked.hits] == [c for c, _ in expected], query
                assert [s for _, s in ranked.hits] == pytest.approx([s for _, s in expected])
    # The bounds settled it for many queries whose common lists were never read.
    assert exact_with_budget >= 20, exact_with_budget


def test_a_narrow_filter_ranks_its_chunks_exactly_from_them(corpus: Corpus) -> None:
    """Under a filter the planner expects to leave few chunks, BM25 ranks those chunks
    from their own postings: the same top 10 as scoring every match and keeping theirs."""
    rng = random.Random(9)
    vocabulary = [f"word{n}" for n in range(60)]
    weights = [1 / (rank + 1) for rank in range(len(vocabulary))]
    for d in range(150):
        corpus.put(f"d{d}", "t", " ".join(rng.choices(vocabulary, weights, k=rng.randint(5, 40))))
    with corpus.sessions() as session:
        chosen = [_chunk_id(corpus, f"d{d}") for d in range(0, 150, 7)]
        narrow = "c.id = ANY(:ids)"
        ranked_some = 0
        for _ in range(20):
            query = " ".join(rng.choices(vocabulary, weights, k=rng.randint(1, 4)))
            prepared = bm25.prepare(session, query, bm25.Bm25Parameters())
            everything = bm25.Bm25Scorer(session, prepared).partial_scores(prepared.terms)
            kept = [(c, v) for c, v in everything.items() if c in set(chosen)]
            expected = sorted(kept, key=lambda cs: (-cs[1], cs[0]))[:10]
            scorer = bm25.Bm25Scorer(session, prepared, narrow, {"ids": chosen})
            assert scorer._filtered_rows() <= bm25.FILTERED_FIRST_ROWS
            ranked = scorer.ranked(10)
            assert ranked.exact
            assert [c for c, _ in ranked.hits] == [c for c, _ in expected], query
            assert [v for _, v in ranked.hits] == pytest.approx([v for _, v in expected])
            ranked_some += bool(expected)
    # Most queries match some of the chosen chunks: empty lists agreeing prove nothing.
    assert ranked_some >= 15, ranked_some


@pytest.mark.parametrize(
    ("query", "found"),
    [
        ("the and of", []),
        ("?!., ;:", []),
        ("word " * 200, ["doc"]),
        ("Привет мир 検索", ["doc"]),
        ("nul\x00byte text", ["doc"]),
        ("lone \ud800 surrogate text", ["doc"]),
        ("lone \ud800 surrogate", []),
    ],
    ids=["stopwords", "punctuation", "long", "non-latin", "nul", "surrogate", "surrogate-none"],
)
def test_odd_queries_answer_without_error(corpus: Corpus, query: str, found: list[str]) -> None:
    """Odd input neither fails nor loses the ordinary terms beside it: a query that shares
    a word with the document finds it, one that shares none finds nothing."""
    corpus.put("doc", "A word", "a word in Привет text")
    corpus.put("other", "Elsewhere", "unrelated prose about gardens")
    documents, _ = corpus.keyword(query)
    assert documents == found


def test_queries_of_common_terms_only_still_find_the_best_matches(corpus: Corpus) -> None:
    """Past the read budget, candidates come from the common terms' best postings."""
    for i in range(40):
        corpus.put(f"filler-{i}", "Notes", "alpha beta " + "gamma " * (i % 3) + "delta")
    corpus.put("best", "Alpha beta", "alpha alpha beta beta")
    with corpus.sessions() as session:
        prepared = bm25.prepare(session, "alpha beta", bm25.Bm25Parameters())
        exact = bm25.Bm25Scorer(session, prepared, budget=bm25.ReadBudget(10**9)).top(5)
        sampled = bm25.Bm25Scorer(session, prepared, budget=bm25.ReadBudget(10, sampled=5)).top(5)
    assert sampled[0] == exact[0]
    assert exact[0][0] == _chunk_id(corpus, "best")
    assert [s for _, s in sampled] == sorted((s for _, s in sampled), reverse=True)


def _chunk_id(corpus: Corpus, document_id: str) -> int:
    with corpus.sessions() as session:
        return int(
            session.execute(
                text("SELECT id FROM chunks WHERE document_id = :d"), {"d": document_id}
            ).scalar_one()
        )
