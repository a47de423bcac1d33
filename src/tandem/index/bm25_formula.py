"""BM25's parameters and formula, written once: the Python scoring, the SQL that scores
postings and the impact expression the postings' index is built on are all made here.

    idf(t)    = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5))
    bm25(c)   = sum_t idf(t) * tf * (k1 + 1) / (tf + k1 * (1 - b + b * len(c) / avglen))
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# The impact index orders each term's postings by their term-frequency part at this fixed
# average length: close to a real corpus's order, and fixed, so an index can hold it.
IMPACT_REFERENCE_LENGTH = 100.0


@dataclass(frozen=True, slots=True)
class Bm25Parameters:
    k1: float = 1.2
    b: float = 0.75


def idf(chunks: int, df: int) -> float:
    return math.log(1.0 + (chunks - df + 0.5) / (df + 0.5))


def term_frequency_part(tf: float, length: float, average: float, p: Bm25Parameters) -> float:
    return tf * (p.k1 + 1.0) / (tf + p.k1 * (1.0 - p.b + p.b * length / average))


def term_frequency_part_sql(tf: str, length: str) -> str:
    """`term_frequency_part` in SQL over the columns `tf` and `length`, with the constants
    as parameters (`score_constants`): the average length is the query's."""
    return f"{tf} * :k1_plus_1 / ({tf} + :k1 * (:one_minus_b + :b_per_average * {length}))"


def score_constants(p: Bm25Parameters, average: float) -> dict[str, float]:
    """The parameters `term_frequency_part_sql` reads."""
    return {
        "k1_plus_1": p.k1 + 1.0,
        "k1": p.k1,
        "one_minus_b": 1.0 - p.b,
        "b_per_average": p.b / average,
    }


def _number(value: float) -> str:
    # Six significant digits: 1.2 * 0.75 / 100 prints as 0.009, not 0.008999999999999999.
    return f"{value:.6g}"


def impact_sql(tf: str = "tf", length: str = "length", p: Bm25Parameters | None = None) -> str:
    """A posting's impact: its term-frequency part at IMPACT_REFERENCE_LENGTH, divided by
    (k1 + 1) (the order is what matters). The postings' impact index is built on exactly
    this text over `tf` and `length` (the planner matches an index expression as written;
    tests/test_bm25_formula.py checks the live index against it)."""
    p = p or Bm25Parameters()
    constant = _number(p.k1 * (1.0 - p.b))
    per_length = _number(p.k1 * p.b / IMPACT_REFERENCE_LENGTH)
    return f"({tf} / ({tf} + {constant} + {per_length} * {length}))"


def impact_index_key() -> str:
    """The key of the index `bm25_postings_impact` (migrations create it from this)."""
    return f"term_id, {impact_sql()} DESC"
