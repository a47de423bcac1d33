"""BM25's SQL (the method: tandem.index.bm25). The top k is one statement, `top_sql`.

Parameters: the read terms (`:read_ids`, `:read_idfs`), the probed terms (`:probed_ids`,
`:probed_idfs`, and `:term_i` / `:idf_i` for each one's sampled postings), `:k`, `:k_less_1`,
`:unread_bound` (the probed terms' bounds added up), `:m` (sampled postings per term),
`:completion_limit`, and SCORE's BM25 constants.
"""

from __future__ import annotations

from tandem.index.bm25_formula import impact_sql, term_frequency_part_sql

SCORE = f"sum(q.idf * {term_frequency_part_sql('p.tf', 'p.length')})"
QUERY_TERMS = "unnest(CAST(:term_ids AS integer[]), CAST(:idfs AS float8[])) AS q(term_id, idf)"
READ_TERMS = "unnest(CAST(:read_ids AS integer[]), CAST(:read_idfs AS float8[])) AS q(term_id, idf)"
PROBED_TERMS = (
    "unnest(CAST(:probed_ids AS integer[]), CAST(:probed_idfs AS float8[])) AS q(term_id, idf)"
)


def filter_join(filter_sql: str) -> str:
    """Joins each posting's chunk when a filter (SQL over `c`) restricts the chunks."""
    return f" JOIN chunks c ON c.id = p.chunk_id AND {filter_sql}" if filter_sql else ""


def list_scores_sql(filter_sql: str, limit: bool) -> str:
    """BM25 sums over the given terms' whole posting lists, per chunk (`limit`: the best
    `:k` only)."""
    order = f" ORDER BY {SCORE} DESC, p.chunk_id LIMIT :k" if limit else ""
    return (
        f"SELECT p.chunk_id, {SCORE} FROM {QUERY_TERMS}"
        f" JOIN bm25_postings p ON p.term_id = q.term_id{filter_join(filter_sql)}"
        f" GROUP BY p.chunk_id{order}"
    )


def filtered_first_sql(filter_sql: str) -> str:
    """The exact BM25 top `:k` among the chunks a narrow filter (SQL over `c`) leaves:
    those chunks first (through the filter's own indexes), then each one's postings of the
    query's terms by primary key. Costs the filtered chunks times the terms, whatever the
    terms' document frequencies: what a selective filter (a user reading 1%) needs, where
    walking the common terms' lists and dropping what the filter refuses does not."""
    # LATERAL, as in chunk_score_join: one probe per chunk and term, never a hash join
    # over the common terms' whole lists.
    return (
        f"SELECT f.id, bm25.score FROM (SELECT c.id FROM chunks c WHERE {filter_sql}) AS f"
        f"{chunk_score_join('f.id')}"
        " WHERE bm25.score IS NOT NULL ORDER BY bm25.score DESC, f.id LIMIT :k"
    )


def chunk_score_join(chunk_id_sql: str) -> str:
    """A LEFT JOIN LATERAL giving `bm25.score` (NULL: no query term) of the chunk whose id
    is `chunk_id_sql`, for another statement to score its rows with (`:term_ids`, ...):
    one primary-key probe per term, the lists of common terms are never scanned."""
    return (
        f" LEFT JOIN LATERAL (SELECT {SCORE} AS score FROM {QUERY_TERMS}"
        f" JOIN bm25_postings p ON p.term_id = q.term_id AND p.chunk_id = {chunk_id_sql})"
        " AS bm25 ON true"
    )


def sampled_postings(filter_sql: str, terms: int) -> str:
    """(chunk_id, idf) for each of `terms` probed terms' `:m` best postings by impact."""
    impact = impact_sql("p.tf", "p.length")
    join = filter_join(filter_sql)
    # One subquery per term with its own id as a parameter: planned with that term's
    # statistics, a long list is read through the impact index, best first.
    return " UNION ALL ".join(
        f"(SELECT p.chunk_id, CAST(:idf_{i} AS float8) AS idf FROM bm25_postings p{join}"
        f" WHERE p.term_id = :term_{i} ORDER BY {impact} DESC LIMIT :m)"
        for i in range(terms)
    )


def top_sql(filter_sql: str, probed_terms: int) -> str:
    """One statement: (chunk_id, score, exact) of the top `:k`, best first.

    `partial`: every chunk on the read terms' lists, with its partial sum. `threshold`: the
    k-th best partial sum; every final score of those k is at least that. `settled`: the
    probed terms' bounds cannot lift any other chunk to it. Then the candidates are the
    chunks whose partial sum plus the bounds reaches it (exact); otherwise the
    `:completion_limit` most hopeful of the partial and the sampled chunks. Sampling runs
    only when not settled (its condition is evaluated once, before any of it is read).
    """
    join = filter_join(filter_sql)
    samples = sampled_postings(filter_sql, probed_terms)
    return (
        "WITH partial AS MATERIALIZED ("
        f" SELECT p.chunk_id, {SCORE} AS s FROM {READ_TERMS}"
        f" JOIN bm25_postings p ON p.term_id = q.term_id{join} GROUP BY p.chunk_id),"
        " threshold AS MATERIALIZED (SELECT COALESCE("
        "  (SELECT s FROM partial ORDER BY s DESC OFFSET :k_less_1 LIMIT 1), 0) AS t),"
        " settled AS MATERIALIZED ("
        "  SELECT CAST(:unread_bound AS float8) < t AND t > 0 AS yes, t FROM threshold),"
        " sampled AS ("
        f"  SELECT s.chunk_id, sum(s.idf) AS hope FROM ({samples}) AS s"
        "  WHERE NOT (SELECT yes FROM settled) GROUP BY s.chunk_id),"
        " chosen AS ("
        "  SELECT p.chunk_id, p.s FROM partial p, settled"
        "   WHERE settled.yes AND p.s + :unread_bound >= settled.t"
        "  UNION ALL"
        "  (SELECT u.chunk_id, sum(u.s) FROM ("
        "    SELECT chunk_id, s, s AS hope FROM partial"
        "    UNION ALL SELECT chunk_id, 0, hope FROM sampled) AS u, settled"
        "   WHERE NOT settled.yes GROUP BY u.chunk_id"
        "   ORDER BY sum(u.hope) DESC, u.chunk_id LIMIT :completion_limit))"
        " SELECT ch.chunk_id, ch.s + COALESCE(x.score, 0) AS score, (SELECT yes FROM settled)"
        " FROM chosen ch LEFT JOIN LATERAL ("
        f"  SELECT {SCORE} AS score FROM {PROBED_TERMS}"
        "   JOIN bm25_postings p ON p.term_id = q.term_id AND p.chunk_id = ch.chunk_id"
        " ) AS x ON true"
        " ORDER BY score DESC, ch.chunk_id LIMIT :k"
    )
