"""Index attempt items become the work queue: claims, leases, failure counts, backoff.

Workers claim items with `FOR UPDATE SKIP LOCKED` from the unfinished ones, hold them
under a lease their heartbeat extends, and fence their final write with the claim count
(tandem.db.attempts). Items left `running` by the previous version (which had no leases)
get a lease that has already run out, so the first worker to sweep takes them over.

Revision ID: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TABLE = "index_attempt_items"


def upgrade() -> None:
    op.add_column(TABLE, sa.Column("claims", sa.Integer(), server_default="0", nullable=False))
    op.add_column(TABLE, sa.Column("failures", sa.Integer(), server_default="0", nullable=False))
    op.add_column(TABLE, sa.Column("lease_owner", sa.String(200), nullable=True))
    op.add_column(TABLE, sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column(TABLE, sa.Column("not_before", sa.DateTime(timezone=True), nullable=True))
    op.execute(
        f"UPDATE {TABLE} SET lease_expires_at = now() - interval '1 second' "
        "WHERE status = 'running'"
    )
    op.create_index(
        "ix_index_attempt_items_unfinished",
        TABLE,
        ["id"],
        postgresql_where=sa.text("status IN ('queued', 'running')"),
    )
    op.create_index("ix_index_attempt_items_lease_owner", TABLE, ["lease_owner"])


def downgrade() -> None:
    op.drop_index("ix_index_attempt_items_lease_owner", TABLE)
    op.drop_index("ix_index_attempt_items_unfinished", TABLE)
    for column in ("not_before", "lease_expires_at", "lease_owner", "failures", "claims"):
        op.drop_column(TABLE, column)
