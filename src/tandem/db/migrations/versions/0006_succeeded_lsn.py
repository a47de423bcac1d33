"""Where in the WAL each attempt succeeded, for reads from replicas.

When an attempt succeeds its transaction records `pg_current_wal_insert_lsn()`: every
item's chunks were committed before it. A replica that has replayed past the newest such
position holds every document of every succeeded attempt, so search may read from it
(`tandem.db.replicas`); the index makes that newest position one index probe.

Revision ID: 0006
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # pg_lsn has no SQLAlchemy type; the column is read and written in SQL only.
    op.execute("ALTER TABLE index_attempts ADD COLUMN succeeded_lsn pg_lsn")
    op.execute(
        "CREATE INDEX index_attempts_succeeded_lsn ON index_attempts (succeeded_lsn) "
        "WHERE succeeded_lsn IS NOT NULL"
    )


def downgrade() -> None:
    op.execute("DROP INDEX index_attempts_succeeded_lsn")
    op.execute("ALTER TABLE index_attempts DROP COLUMN succeeded_lsn")
