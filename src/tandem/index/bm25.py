"""BM25 keyword retrieval inside PostgreSQL, over the postings the `chunks` triggers keep.

Scoring (per chunk c, query lexemes t, Lucene's non-negative idf):

    idf(t)    = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5))
    bm25(c)   = sum_t idf(t) * tf * (k1 + 1) / (tf + k1 * (1 - b + b * len(c) / avglen))

`tf` and `len` are BM25F-style: a title occurrence counts `title_weight` times a body
occurrence (migration 0002). N, df and the lengths are exact and transactional.

Candidates are found term-at-a-time, rarest term first, with MaxScore bounds: each term's
largest possible contribution (`idf * f(max_tf, min_length)`) is known from its statistics.
Once the bounds of the terms not yet read add up to less than the k-th best partial score,
no unseen chunk can reach the top k, so the long lists of common terms are never read in
full: only the chunks that could still make the top k get those terms' postings looked up
(by primary key). The result is the exact BM25 top k, not an approximation.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.orm import Session

from tandem.db.models import BM25_IMPACT, TEXT_SEARCH_CONFIG

# One round trip reads several short posting lists together, up to this many postings.
GROUP_POSTINGS = 2_000
# At most this many postings are read in full per query; beyond, each remaining (common)
# term contributes only its SAMPLED_POSTINGS best postings by impact as new candidates.
READ_BUDGET = 4_000
SAMPLED_POSTINGS = 200
# In that case at most this many candidates get the common terms' postings looked up.
COMPLETION_LIMIT = 500


@dataclass(frozen=True, slots=True)
class Bm25Parameters:
    k1: float = 1.2
    b: float = 0.75


@dataclass(frozen=True, slots=True)
class QueryTerm:
    term_id: int
    lexeme: str
    df: int
    idf: float
    bound: float  # no chunk gets more than this from the term


@dataclass(frozen=True, slots=True)
class PreparedQuery:
    """A query's lexemes with their statistics; empty when no lexeme is in the corpus."""

    terms: tuple[QueryTerm, ...]
    average_length: float
    parameters: Bm25Parameters


def idf(chunks: int, df: int) -> float:
    return math.log(1.0 + (chunks - df + 0.5) / (df + 0.5))


def term_frequency_part(tf: float, length: float, average: float, p: Bm25Parameters) -> float:
    return tf * (p.k1 + 1.0) / (tf + p.k1 * (1.0 - p.b + p.b * length / average))


def storable(value: str) -> str:
    """`value` without what PostgreSQL text cannot hold: NUL and lone surrogates."""
    return value.replace("\x00", " ").encode("utf-8", "replace").decode("utf-8")


def prepare(session: Session, query: str, parameters: Bm25Parameters) -> PreparedQuery:
    """Analyse the query (the same English analysis as the chunks) and read its terms'
    statistics and the corpus totals, in one round trip."""
    rows = session.execute(
        text(
            "SELECT c.chunks, c.total_length, t.id, t.lexeme, t.df, t.max_tf, t.min_length"
            " FROM bm25_corpus c LEFT JOIN bm25_terms t ON t.df > 0 AND t.lexeme IN"
            f" (SELECT lexeme FROM unnest(to_tsvector('{TEXT_SEARCH_CONFIG}', :q)))"
        ),
        {"q": storable(query)},
    ).all()
    chunks, total_length = int(rows[0][0]), float(rows[0][1])
    average = total_length / chunks if chunks and total_length > 0 else 1.0
    terms = []
    for _, _, term_id, lexeme, df, max_tf, min_length in rows:
        if term_id is None:  # no query lexeme is in the corpus
            continue
        weight = idf(chunks, int(df))
        bound = weight * term_frequency_part(max_tf, min_length, average, parameters)
        terms.append(QueryTerm(int(term_id), str(lexeme), int(df), weight, bound))
    terms.sort(key=lambda t: (t.df, t.term_id))  # rarest first
    return PreparedQuery(tuple(terms), average, parameters)


SCORE = "sum(q.idf * p.tf * :k1_plus_1 / (p.tf + :k1 * (:one_minus_b + :b_per_average * p.length)))"
QUERY_TERMS = "unnest(CAST(:term_ids AS integer[]), CAST(:idfs AS float8[])) AS q(term_id, idf)"


def _filter_join(filter_sql: str) -> str:
    """Joins each posting's chunk when a filter (SQL over `c`) restricts the chunks."""
    return f" JOIN chunks c ON c.id = p.chunk_id AND {filter_sql}" if filter_sql else ""


def _list_scores_sql(filter_sql: str, prune: bool, limit: bool) -> str:
    """Partial BM25 sums over the given terms' whole posting lists, per chunk.

    `prune` drops chunks that cannot reach the threshold even with every unread term
    (`:unread_bound`), unless they were seen before (their partial sum must stay whole);
    `limit` keeps only the best `:k` (when nothing is left to read or merge).
    """
    join = _filter_join(filter_sql)
    having = (
        f" HAVING {SCORE} + :unread_bound >= :threshold"
        # IN (subquery) is hashed; `= ANY(array)` would compare against every element.
        " OR p.chunk_id IN (SELECT unnest(CAST(:seen_ids AS bigint[])))"
        if prune
        else ""
    )
    order = f" ORDER BY {SCORE} DESC, p.chunk_id LIMIT :k" if limit else ""
    return (
        f"SELECT p.chunk_id, {SCORE} FROM {QUERY_TERMS}"
        f" JOIN bm25_postings p ON p.term_id = q.term_id{join}"
        f" GROUP BY p.chunk_id{having}{order}"
    )


# Per chunk, one primary-key probe per term: the lists of common terms are never scanned
# (a plan the planner would otherwise pick when it underestimates their length).
CHUNK_SCORES_SQL = (
    "SELECT k.chunk_id, s.score FROM unnest(CAST(:chunk_ids AS bigint[])) AS k(chunk_id)"
    f" CROSS JOIN LATERAL (SELECT {SCORE} AS score FROM {QUERY_TERMS}"
    " JOIN bm25_postings p ON p.term_id = q.term_id AND p.chunk_id = k.chunk_id) AS s"
    " WHERE s.score IS NOT NULL"
)


class Bm25Scorer:
    """Runs the SQL of one prepared query in one session; `filter_sql` restricts chunks."""

    def __init__(
        self,
        session: Session,
        query: PreparedQuery,
        filter_sql: str = "",
        filter_params: dict[str, object] | None = None,
        *,
        group_postings: int = GROUP_POSTINGS,
        read_budget: int = READ_BUDGET,
        sampled: int = SAMPLED_POSTINGS,
        completion_limit: int = COMPLETION_LIMIT,
    ) -> None:
        self._completion_limit = completion_limit
        self._group_postings = group_postings
        self._read_budget = read_budget
        self._sampled = sampled
        self._session = session
        self._query = query
        self._filter_sql = filter_sql
        self._filter_params = filter_params or {}

    def partial_scores(
        self,
        terms: Sequence[QueryTerm],
        chunk_ids: Sequence[int] | None = None,
        *,
        prune: tuple[float, float, Sequence[int]] | None = None,
        limit: int | None = None,
    ) -> dict[int, float]:
        """Sums over `terms` per chunk (of `chunk_ids` only, if given).

        `prune`: (threshold, bound of the terms still unread, chunk ids seen before).
        """
        if not terms or (chunk_ids is not None and not chunk_ids):
            return {}
        p = self._query.parameters
        params: dict[str, object] = {
            **self._filter_params,
            "term_ids": [t.term_id for t in terms],
            "idfs": [t.idf for t in terms],
            "k1_plus_1": p.k1 + 1.0,
            "k1": p.k1,
            "one_minus_b": 1.0 - p.b,
            "b_per_average": p.b / self._query.average_length,
        }
        if chunk_ids is not None:
            params["chunk_ids"] = sorted(chunk_ids)
        if prune is not None:
            params["threshold"], params["unread_bound"], seen = prune
            params["seen_ids"] = sorted(seen)
        if limit is not None:
            params["k"] = limit
        if chunk_ids is not None:
            sql = CHUNK_SCORES_SQL
        else:
            sql = _list_scores_sql(self._filter_sql, prune is not None, limit is not None)
        return {int(row[0]): float(row[1]) for row in self._session.execute(text(sql), params)}

    def scores(self, chunk_ids: Sequence[int]) -> dict[int, float]:
        """Exact BM25 of the given chunks (0 for chunks matching no query term)."""
        found = self.partial_scores(self._query.terms, chunk_ids)
        return {chunk_id: found.get(chunk_id, 0.0) for chunk_id in chunk_ids}

    def top(self, k: int) -> list[tuple[int, float]]:
        """The BM25 top k as (chunk id, score), best first, ties by chunk id.

        Exact whenever the rare terms' lists and the bounds settle it within READ_BUDGET
        postings; otherwise the common terms' best postings by impact join the candidates,
        and every candidate still gets its exact score.
        """
        terms = self._query.terms
        if not terms or k <= 0:
            return []
        seen: dict[int, float] = {}
        unread_bound = sum(t.bound for t in terms)
        position = read = 0
        while position < len(terms) and unread_bound >= (threshold := _kth_best(seen.values(), k)):
            group = _next_group(terms, position, self._group_postings)
            size = sum(t.df for t in group)
            if read + size > self._read_budget:
                break
            position += len(group)
            read += size
            unread_bound = sum(t.bound for t in terms[position:])
            if not seen and position == len(terms):
                # Nothing read before and nothing after: the database can rank alone.
                return list(self.partial_scores(group, limit=k).items())
            prune = (threshold, unread_bound, list(seen)) if threshold > 0 else None
            for chunk_id, score in self.partial_scores(group, prune=prune).items():
                seen[chunk_id] = seen.get(chunk_id, 0.0) + score
        unread = terms[position:]
        if unread:
            threshold = _kth_best(seen.values(), k)
            if unread_bound >= threshold:  # the budget ran out before the bounds settled it
                promising = self._approximate_candidates(unread, seen)
            else:  # only chunks whose best case reaches the threshold can be in the top k
                promising = [c for c, s in seen.items() if s + unread_bound >= threshold]
            completed = self.partial_scores(unread, promising)
            seen = {c: seen.get(c, 0.0) + completed.get(c, 0.0) for c in promising}
        return heapq.nsmallest(k, seen.items(), key=lambda cs: (-cs[1], cs[0]))

    def _approximate_candidates(
        self, unread: Sequence[QueryTerm], seen: Mapping[int, float]
    ) -> list[int]:
        """The chunks most likely to win: by their exact partial score over the terms read
        plus the idf of each common term they are among the best postings of."""
        hopes = dict(seen)
        for chunk_id, idf_sum in self.sampled(unread).items():
            hopes[chunk_id] = hopes.get(chunk_id, 0.0) + idf_sum
        best = heapq.nlargest(self._completion_limit, hopes.items(), key=lambda cs: cs[1])
        return [chunk_id for chunk_id, _ in best]

    def sampled(self, terms: Sequence[QueryTerm]) -> dict[int, float]:
        """Each term's SAMPLED_POSTINGS best chunks by impact (that pass the filter), with
        the sum of the idf of the terms that sampled them."""
        if not terms:
            return {}
        join = _filter_join(self._filter_sql)
        impact = BM25_IMPACT.replace("tf", "p.tf").replace("length", "p.length")
        # One subquery per term with its own id as a parameter: planned with that term's
        # statistics, a long list is read through the impact index, best first.
        samples = " UNION ALL ".join(
            f"(SELECT p.chunk_id, CAST(:idf_{i} AS float8) AS idf FROM bm25_postings p{join}"
            f" WHERE p.term_id = :term_{i} ORDER BY {impact} DESC LIMIT :m)"
            for i in range(len(terms))
        )
        params: dict[str, object] = {**self._filter_params, "m": self._sampled}
        for i, term in enumerate(terms):
            params[f"term_{i}"], params[f"idf_{i}"] = term.term_id, term.idf
        # Generic plans cannot tell a long list from a short one and sort the whole list.
        self._session.execute(text("SET LOCAL enable_sort = off"))
        rows = self._session.execute(
            text(f"SELECT chunk_id, sum(idf) FROM ({samples}) AS s GROUP BY chunk_id"), params
        ).all()
        self._session.execute(text("RESET enable_sort"))
        return {int(row[0]): float(row[1]) for row in rows}


def _next_group(terms: Sequence[QueryTerm], start: int, most: int) -> list[QueryTerm]:
    group = [terms[start]]
    postings = terms[start].df
    for term in terms[start + 1 :]:
        if postings + term.df > most:
            break
        group.append(term)
        postings += term.df
    return group


def _kth_best(scores: Iterable[float], k: int) -> float:
    best = heapq.nlargest(k, scores)
    return best[-1] if len(best) == k else 0.0
