"""Users, groups, scoped keys and per-document access.

Keys belong to a user (or are service keys) and have a scope: `search`, `ingest` or
`admin`; they may expire, and their last use is recorded. Documents, their chunks and
sources carry `readers`: the principals who may read them, as tokens (`public`, `u:<id>`,
`g:<id>`), which every search, listing and read intersects with the caller's, inside the
query (a GIN index on the chunks' array). Existing keys become admin service keys and
existing documents public.

Revision ID: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

PUBLIC = "{public}"


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), sa.Identity(always=True), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("is_admin", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    )
    op.create_table(
        "groups",
        sa.Column("id", sa.Integer(), sa.Identity(always=True), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    )
    op.create_table(
        "group_members",
        sa.Column(
            "group_id", sa.Integer(), sa.ForeignKey("groups.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column(
            "user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False
        ),
        sa.PrimaryKeyConstraint("group_id", "user_id"),
    )
    op.create_index("ix_group_members_user_id", "group_members", ["user_id"])
    op.add_column(
        "api_keys",
        sa.Column(
            "user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=True
        ),
    )
    op.add_column(
        "api_keys", sa.Column("scope", sa.String(16), nullable=False, server_default="admin")
    )
    op.add_column("api_keys", sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("api_keys", sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True))
    op.create_check_constraint(
        "api_keys_scope_check", "api_keys", "scope IN ('search', 'ingest', 'admin')"
    )
    for table in ("documents", "chunks", "sources"):
        op.add_column(
            table,
            sa.Column("readers", ARRAY(sa.Text()), nullable=False, server_default=PUBLIC),
        )
    for table in ("documents", "sources", "index_attempt_items"):
        op.add_column(
            table,
            sa.Column(
                "owner_id",
                sa.Integer(),
                sa.ForeignKey("users.id", ondelete="SET NULL"),
                nullable=True,
            ),
        )
    op.add_column(
        "index_attempt_items",
        sa.Column("readers", ARRAY(sa.Text()), nullable=False, server_default=PUBLIC),
    )
    op.create_index("ix_chunks_readers", "chunks", ["readers"], postgresql_using="gin")
    op.create_index("ix_documents_readers", "documents", ["readers"], postgresql_using="gin")


def downgrade() -> None:
    op.drop_index("ix_documents_readers", "documents")
    op.drop_index("ix_chunks_readers", "chunks")
    op.drop_column("index_attempt_items", "readers")
    for table in ("documents", "sources", "index_attempt_items"):
        op.drop_column(table, "owner_id")
    for table in ("documents", "chunks", "sources"):
        op.drop_column(table, "readers")
    op.drop_constraint("api_keys_scope_check", "api_keys", type_="check")
    for column in ("last_used_at", "expires_at", "scope", "user_id"):
        op.drop_column("api_keys", column)
    op.drop_index("ix_group_members_user_id", "group_members")
    op.drop_table("group_members")
    op.drop_table("groups")
    op.drop_table("users")
