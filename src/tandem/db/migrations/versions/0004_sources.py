"""Sources: a document's identity is its source and its path inside it.

`sources` holds each source (the built-in `upload` for files and batches sent to the API,
folders and web sites kept in sync); `source_syncs` one row per sync with its counts;
`source_entries` what the last sync saw at each path (its version and content hash, and a
web page's links), so the next sync reads only what changed. Documents and chunks gain
`source`; their old `source` column (the uploaded file name) is the document's `path`.
Existing documents keep their ids and become the `upload` source's. Items record how
their document was indexed (`outcome`, `embedded_chunks`); an attempt still collecting
items (a sync walking its source) is not finished by its workers.

Revision ID: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

UPLOAD = "upload"


def upgrade() -> None:
    op.create_table(
        "sources",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("settings", JSONB(), nullable=False, server_default="{}"),
        sa.Column("interval_seconds", sa.Integer(), nullable=True),
        sa.Column("next_sync_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sync_requested_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sync_owner", sa.String(200), nullable=True),
        sa.Column("sync_lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.CheckConstraint("kind IN ('upload', 'folder', 'web')", name="sources_kind_check"),
    )
    op.execute(f"INSERT INTO sources (name, kind) VALUES ('{UPLOAD}', 'upload')")
    op.create_table(
        "source_syncs",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), primary_key=True),
        sa.Column(
            "source",
            sa.String(64),
            sa.ForeignKey("sources.name", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column(
            "started_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("walked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        *(
            sa.Column(name, sa.Integer(), nullable=False, server_default="0")
            for name in ("added", "updated", "unchanged", "deleted", "failed")
        ),
        sa.Column("errors", JSONB(), nullable=False, server_default="[]"),
        sa.Column(
            "attempt_id",
            UUID(as_uuid=True),
            sa.ForeignKey("index_attempts.id", ondelete="SET NULL"),
            nullable=True,
            index=True,
        ),
    )
    op.create_table(
        "source_entries",
        sa.Column("source", sa.String(64), sa.ForeignKey("sources.name", ondelete="CASCADE")),
        sa.Column("path", sa.Text()),
        sa.Column("version", sa.Text(), nullable=False, server_default=""),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("links", JSONB(), nullable=False, server_default="[]"),
        sa.Column("document_id", sa.String(512), nullable=False),
        sa.PrimaryKeyConstraint("source", "path"),
    )
    for table in ("documents", "chunks"):
        op.alter_column(table, "source", new_column_name="path")
        op.add_column(
            table, sa.Column("source", sa.String(64), nullable=False, server_default=UPLOAD)
        )
    op.create_foreign_key(
        "documents_source_fkey", "documents", "sources", ["source"], ["name"], ondelete="CASCADE"
    )
    op.create_index("ix_documents_source_path", "documents", ["source", "path"])
    op.add_column(
        "index_attempts",
        sa.Column("collecting", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    items = "index_attempt_items"
    op.add_column(items, sa.Column("source", sa.String(64), nullable=False, server_default=UPLOAD))
    op.add_column(items, sa.Column("outcome", sa.String(16), nullable=True))
    op.add_column(
        items, sa.Column("embedded_chunks", sa.Integer(), nullable=False, server_default="0")
    )


def downgrade() -> None:
    items = "index_attempt_items"
    for column in ("embedded_chunks", "outcome", "source"):
        op.drop_column(items, column)
    op.drop_column("index_attempts", "collecting")
    op.drop_index("ix_documents_source_path", "documents")
    op.drop_constraint("documents_source_fkey", "documents", type_="foreignkey")
    for table in ("documents", "chunks"):
        op.drop_column(table, "source")
        op.alter_column(table, "path", new_column_name="source")
    op.drop_table("source_entries")
    op.drop_table("source_syncs")
    op.drop_table("sources")
