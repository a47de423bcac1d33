"""BM25 keyword retrieval inside PostgreSQL, over the postings the `chunks` triggers keep.

Scoring: tandem.index.bm25_formula (Lucene's non-negative idf, k1 and b written there once).

`tf` and `len` are BM25F-style: a title occurrence counts `title_weight` times a body
occurrence (migration 0002). N, df and the lengths are exact and transactional.

The top k comes from one SQL statement, so that no partial list crosses the wire. The
rarest terms' posting lists are read in full, up to a budget of postings; each remaining
(common) term has a known largest contribution (`idf * f(max_tf, min_length)`, MaxScore).
When those bounds add up to less than the k-th best partial score, no chunk outside the
rare lists can reach the top k, and only the chunks whose partial score plus the bounds
can still reach it get the common terms' postings looked up (by primary key): the exact
BM25 top k. Otherwise (common terms only, or bounds too loose) each common term's best
postings by impact join the candidates, and every candidate is still scored exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import text
from sqlalchemy.orm import Session

from tandem.db.models import TEXT_SEARCH_CONFIG
from tandem.index.bm25_formula import Bm25Parameters as Bm25Parameters
from tandem.index.bm25_formula import idf, score_constants, term_frequency_part
from tandem.index.bm25_sql import filtered_first_sql, list_scores_sql, top_sql
from tandem.index.filters import FilterEstimates

# The rarest terms' lists are read in full up to this many postings per query; beyond,
# each remaining (common) term contributes only its SAMPLED_POSTINGS best postings by
# impact as new candidates.
READ_BUDGET = 4_000
SAMPLED_POSTINGS = 200
# In that case at most this many candidates get the common terms' postings looked up.
COMPLETION_LIMIT = 250


# A filter the planner expects to leave at most this many chunks is ranked from those
# chunks (bm25_sql.filtered_first_sql): their postings by primary key, exactly. Past it,
# the lists are walked as without a filter (benchmarks/access_latency.py).
FILTERED_FIRST_ROWS = 10_000


@dataclass(frozen=True, slots=True)
class ReadBudget:
    postings: int = READ_BUDGET  # read in full, rarest lists first
    sampled: int = SAMPLED_POSTINGS  # per common term, when the bounds do not settle it
    completion_limit: int = COMPLETION_LIMIT  # candidates scored exactly in that case


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


def storable(value: str) -> str:
    """`value` without what PostgreSQL text cannot hold: NUL and lone surrogates."""
    return value.replace("\x00", " ").encode("utf-8", "replace").decode("utf-8")


def prepare(session: Session, query: str, parameters: Bm25Parameters) -> PreparedQuery:
    """Analyse the query (the same English analysis as the chunks) and read its terms'
    statistics and the corpus totals, in one round trip.

    It also turns sorting off for the rest of the transaction (the BM25 statements that
    follow): generic plans cannot tell a long posting list from a short one and would
    sort a common term's whole list to sample its best postings, where the impact index
    reads them best first. Their other sorts (the top k) have no alternative plan."""
    rows = session.execute(
        text(
            "SELECT c.chunks, c.total_length, t.id, t.lexeme, t.df, t.max_tf, t.min_length,"
            " set_config('enable_sort', 'off', true)"
            " FROM bm25_corpus c LEFT JOIN bm25_terms t ON t.df > 0 AND t.lexeme IN"
            f" (SELECT lexeme FROM unnest(to_tsvector('{TEXT_SEARCH_CONFIG}', :q)))"
        ),
        {"q": storable(query)},
    ).all()
    chunks, total_length = int(rows[0][0]), float(rows[0][1])
    average = total_length / chunks if chunks and total_length > 0 else 1.0
    terms = []
    for _, _, term_id, lexeme, df, max_tf, min_length, _ in rows:
        if term_id is None:  # no query lexeme is in the corpus
            continue
        weight = idf(chunks, int(df))
        bound = weight * term_frequency_part(max_tf, min_length, average, parameters)
        terms.append(QueryTerm(int(term_id), str(lexeme), int(df), weight, bound))
    terms.sort(key=lambda t: (t.df, t.term_id))  # rarest first
    return PreparedQuery(tuple(terms), average, parameters)


@dataclass(frozen=True, slots=True)
class Ranked:
    hits: list[tuple[int, float]]  # (chunk id, score), best first
    exact: bool  # False: the common terms' best postings stood in for their whole lists


@dataclass(frozen=True, slots=True)
class Bm25Scorer:
    """Runs the SQL of one prepared query in one session; `filter_sql` restricts chunks."""

    session: Session
    query: PreparedQuery
    filter_sql: str = ""
    filter_params: dict[str, object] = field(default_factory=dict)
    budget: ReadBudget = ReadBudget()
    estimates: FilterEstimates | None = None

    def _filtered_rows(self) -> float:
        """How many chunks the filter leaves, as the planner estimates it (no scan; with
        `estimates`, as it estimated it lately)."""

        def estimate() -> float:
            return _estimated_rows(self.session, self.filter_sql, self.filter_params)

        if self.estimates is None:
            return estimate()
        return self.estimates.rows(self.filter_sql, self.filter_params, estimate)

    def _constants(self) -> dict[str, object]:
        constants = score_constants(self.query.parameters, self.query.average_length)
        return {**self.filter_params, **constants}

    def score_parameters(self, terms: Sequence[QueryTerm] | None = None) -> dict[str, object]:
        """The parameters of the SQL that sums `terms` (default: all the query's) per chunk:
        `bm25_sql.SCORE` over `bm25_sql.QUERY_TERMS`, as in `bm25_sql.chunk_score_join`."""
        chosen = self.query.terms if terms is None else terms
        return self._constants() | {
            "term_ids": [t.term_id for t in chosen],
            "idfs": [t.idf for t in chosen],
        }

    def partial_scores(
        self, terms: Sequence[QueryTerm], *, limit: int | None = None
    ) -> dict[int, float]:
        """Sums over `terms` per chunk (only the best `limit`, if given)."""
        if not terms:
            return {}
        params = self.score_parameters(terms)
        if limit is not None:
            params["k"] = limit
        sql = list_scores_sql(self.filter_sql, limit is not None)
        return {int(row[0]): float(row[1]) for row in self.session.execute(text(sql), params)}

    def top(self, k: int) -> list[tuple[int, float]]:
        """The BM25 top k as (chunk id, score), best first, ties by chunk id."""
        return self.ranked(k).hits

    def ranked(self, k: int) -> Ranked:
        """The top k, and whether it is exact (module docstring): in one round trip (two
        with a filter whose estimate is not kept: the planner's estimate of what it leaves
        chooses the statement)."""
        terms = self.query.terms
        if not terms or k <= 0:
            return Ranked([], exact=True)
        if self.filter_sql and self._filtered_rows() <= FILTERED_FIRST_ROWS:
            found = self.session.execute(
                text(filtered_first_sql(self.filter_sql)), self.score_parameters() | {"k": k}
            )
            return Ranked([(int(r[0]), float(r[1])) for r in found], exact=True)
        read, probed = _split_by_budget(terms, self.budget.postings)
        if not probed:  # every list fits the budget: the database ranks alone
            return Ranked(list(self.partial_scores(read, limit=k).items()), exact=True)
        params = self._constants() | {
            "read_ids": [t.term_id for t in read],
            "read_idfs": [t.idf for t in read],
            "probed_ids": [t.term_id for t in probed],
            "probed_idfs": [t.idf for t in probed],
            "unread_bound": sum(t.bound for t in probed),
            "k": k,
            "k_less_1": k - 1,
            "m": self.budget.sampled,
            "completion_limit": max(k, self.budget.completion_limit),
        }
        for i, term in enumerate(probed):
            params[f"term_{i}"], params[f"idf_{i}"] = term.term_id, term.idf
        # Sorting is off in this transaction since `prepare` (see there).
        rows = self.session.execute(text(top_sql(self.filter_sql, len(probed))), params).all()
        exact = bool(rows[0][2]) if rows else True
        return Ranked([(int(r[0]), float(r[1])) for r in rows], exact=exact)


def _estimated_rows(session: Session, filter_sql: str, params: dict[str, object]) -> float:
    plan = session.execute(
        text(f"EXPLAIN (FORMAT JSON) SELECT 1 FROM chunks c WHERE {filter_sql}"), params
    ).scalar_one()
    return float(plan[0]["Plan"]["Plan Rows"])


def _split_by_budget(
    terms: Sequence[QueryTerm], budget: int
) -> tuple[list[QueryTerm], list[QueryTerm]]:
    """(the rarest terms whose lists add up to at most `budget` postings, the rest)."""
    read: list[QueryTerm] = []
    postings = 0
    for term in terms:  # rarest first
        if postings + term.df > budget:
            break
        read.append(term)
        postings += term.df
    return read, list(terms[len(read) :])
