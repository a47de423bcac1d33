"""What search reads, kept where it is cheapest to read: postings all-visible, so that
BM25 reads them from their index alone, and each chunk's vector in its row.

Postings.

The primary key of `bm25_postings` carries `tf` and `length` (INCLUDE): a term's postings
are one index range, read without the table, but only on pages the visibility map marks
all-visible. Postings are written by the `chunks` triggers in the order chunks arrive, so
a term's postings lie on as many table pages as it has postings: where the map is not set,
each posting costs a table page (at 16k real chunks a six-term query's lists read 653
pages against 22, 4.3 ms against 0.7; benchmarks/README.md). Autovacuum sets the map;
by default it starts on a table only once inserts reach 20% of it, which leaves the newest
fifth of the corpus (what a team has just ingested) read the slow way. Here it starts at
2% of inserts or of deleted postings (a re-indexed document deletes its old ones).

Vectors. pgvector gives `vector` columns EXTERNAL storage: a row over about 2 kB (a chunk's
text, tsvector and 1,540-byte vector of 384 dimensions) has its vector moved out of line,
and every cosine search computes from the table (the HNSW top k's own and their opening
chunks', the keyword candidates') fetches it through the TOAST index: at 16k real chunks
the cosines of 50 keyword candidates read 594 pages, 297 with the vectors in their rows.
MAIN keeps a vector in its row unless the row could not fit at all (the text goes out of
line first). It applies to rows written from now on; a chunk written before keeps its
vector out of line until its document is indexed again (or `VACUUM FULL chunks`
rewrites the table at once, holding an exclusive lock meanwhile).

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
    op.execute("ALTER TABLE chunks ALTER COLUMN embedding SET STORAGE MAIN")


def downgrade() -> None:
    op.execute("ALTER TABLE chunks ALTER COLUMN embedding SET STORAGE EXTERNAL")
    op.execute(f"ALTER TABLE bm25_postings RESET ({', '.join(SETTINGS)})")
