"""Postings kept all-visible, so that BM25 reads them from the index alone.

The primary key of `bm25_postings` carries `tf` and `length` (INCLUDE): a term's postings
are one index range, read without the table, but only on pages the visibility map marks
all-visible. Postings are written by the `chunks` triggers in the order chunks arrive, so
a term's postings lie on as many table pages as it has postings: where the map is not set,
each posting costs a table page (at 16k real chunks a six-term query's lists read 653
pages against 22, 4.3 ms against 0.7; benchmarks/README.md). Autovacuum sets the map;
by default it starts on a table only once inserts reach 20% of it, which leaves the newest
fifth of the corpus (what a team has just ingested) read the slow way. Here it starts at
2% of inserts or of deleted postings (a re-indexed document deletes its old ones).

Revision ID: 0007
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

SETTINGS = ("autovacuum_vacuum_insert_scale_factor", "autovacuum_vacuum_scale_factor")
SCALE_FACTOR = 0.02


def upgrade() -> None:
    options = ", ".join(f"{name} = {SCALE_FACTOR}" for name in SETTINGS)
    op.execute(f"ALTER TABLE bm25_postings SET ({options})")


def downgrade() -> None:
    op.execute(f"ALTER TABLE bm25_postings RESET ({', '.join(SETTINGS)})")
