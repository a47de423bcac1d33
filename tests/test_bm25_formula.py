"""BM25's formula is written once (tandem.index.bm25_formula): the live database's impact
index must be built on exactly the expression it generates, or the planner stops using it
for the sampled postings (and a changed k1 or b would leave the index ordering by the old
one)."""

from __future__ import annotations

import math

from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from tandem.index.bm25_formula import (
    IMPACT_REFERENCE_LENGTH,
    Bm25Parameters,
    impact_index_key,
    impact_sql,
    term_frequency_part,
)

DEFINITION = "SELECT pg_get_indexdef(CAST(:name AS regclass))"


def test_the_live_impact_index_uses_the_generated_expression(
    empty_database: sessionmaker[Session],
) -> None:
    with empty_database() as session:
        live = session.execute(text(DEFINITION), {"name": "bm25_postings_impact"}).scalar_one()
        # The same key as generated now, rendered by the server the same way.
        session.execute(
            text(
                f"CREATE INDEX impact_probe ON bm25_postings ({impact_index_key()})"
                " INCLUDE (chunk_id)"
            )
        )
        probe = session.execute(text(DEFINITION), {"name": "impact_probe"}).scalar_one()
        session.rollback()
    assert probe.replace("impact_probe", "bm25_postings_impact") == live


def test_the_planner_reads_sampled_postings_through_the_index(
    empty_database: sessionmaker[Session],
) -> None:
    with empty_database() as session:
        session.execute(text("SET LOCAL enable_sort = off"))
        plan = session.execute(
            text(
                "EXPLAIN SELECT p.chunk_id FROM bm25_postings p WHERE p.term_id = 1"
                f" ORDER BY {impact_sql('p.tf', 'p.length')} DESC LIMIT 5"
            )
        ).all()
        session.rollback()
    assert "bm25_postings_impact" in "\n".join(str(row[0]) for row in plan)


def test_the_impact_is_the_term_frequency_part_at_the_reference_length(
    empty_database: sessionmaker[Session],
) -> None:
    p = Bm25Parameters()
    postings = [(1.0, 10.0), (3.0, 200.0), (2.0, 40.0), (5.0, 900.0), (1.0, 5.0)]
    with empty_database() as session:
        impacts = session.scalars(
            text(
                f"SELECT {impact_sql()} FROM unnest(CAST(:tfs AS real[]), CAST(:lengths AS"
                " real[])) WITH ORDINALITY AS v(tf, length, n) ORDER BY n"
            ),
            {"tfs": [t for t, _ in postings], "lengths": [n for _, n in postings]},
        ).all()
    for impact, (tf, length) in zip(impacts, postings, strict=True):
        part = term_frequency_part(tf, length, IMPACT_REFERENCE_LENGTH, p)
        assert math.isclose(float(impact) * (p.k1 + 1.0), part, rel_tol=1e-6)
