"""Relational schema: sources, documents, chunks (vectors + full text), index attempts,
API keys.

Alembic migrations in `tandem/db/migrations` create exactly this; a test compares them.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any, ClassVar

from pgvector.sqlalchemy import Vector
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Computed,
    DateTime,
    Enum,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, TSVECTOR, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import UserDefinedType

# The vector column's size is fixed by the first migration (from the embedding model);
# switching to a model of another size means a new migration and a re-index.
EMBEDDING_DIMENSIONS = 384
TEXT_SEARCH_CONFIG = "english"


def vector_literal(vector: Iterable[float]) -> str:
    """pgvector's text form of a vector, for `CAST(:v AS vector)` in text SQL. An array's
    `tolist()` gives the same floats as `float()` of each element, several times faster."""
    tolist = getattr(vector, "tolist", None)
    values = tolist() if tolist is not None else [float(x) for x in vector]
    return "[" + ",".join(map(repr, values)) + "]"


class PgLsn(UserDefinedType[str]):
    """PostgreSQL's WAL position type (text form `16/B374D848`); SQLAlchemy has none."""

    cache_ok = True

    def get_col_spec(self, **_: Any) -> str:
        return "pg_lsn"


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSONB}


class AttemptStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


def _status_enum(name: str) -> Enum:
    return Enum(AttemptStatus, name=name, values_callable=lambda e: [m.value for m in e])


UPLOAD_SOURCE = "upload"  # the source of files and batches sent to the API
# Who may read a document: tokens of principals (tandem.db.principals), `public` for all.
PUBLIC = "public"


def _readers() -> Mapped[list[str]]:
    return mapped_column(ARRAY(Text), default=lambda: [PUBLIC], server_default="{public}")


def _owner() -> Mapped[int | None]:
    return mapped_column(ForeignKey("users.id", ondelete="SET NULL"))


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, Identity(always=True), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Group(Base):
    __tablename__ = "groups"

    id: Mapped[int] = mapped_column(Integer, Identity(always=True), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class GroupMember(Base):
    __tablename__ = "group_members"
    __table_args__ = (Index("ix_group_members_user_id", "user_id"),)

    group_id: Mapped[int] = mapped_column(
        ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )


class SourceKind(enum.StrEnum):
    UPLOAD = "upload"
    FOLDER = "folder"
    WEB = "web"


class Source(Base):
    """Where documents come from; a sync of a folder or web source holds its lease."""

    __tablename__ = "sources"
    __table_args__ = (
        CheckConstraint("kind IN ('upload', 'folder', 'web')", name="sources_kind_check"),
    )

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default="{}")
    interval_seconds: Mapped[int | None] = mapped_column(Integer)
    next_sync_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    sync_requested_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    sync_owner: Mapped[str | None] = mapped_column(String(200))
    sync_lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # Its documents take these readers; changing them updates the documents, not vectors.
    readers: Mapped[list[str]] = _readers()
    owner_id: Mapped[int | None] = _owner()


class SourceSync(Base):
    """One sync of a source: what its walk found, and the index attempt it queued."""

    __tablename__ = "source_syncs"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    source: Mapped[str] = mapped_column(ForeignKey("sources.name", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(16))  # running, succeeded, failed, interrupted
    owner: Mapped[str] = mapped_column(String(200))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    walked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    added: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    updated: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    unchanged: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    deleted: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    failed: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    errors: Mapped[list[str]] = mapped_column(JSONB, default=list, server_default="[]")
    attempt_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("index_attempts.id", ondelete="SET NULL"), index=True
    )


class SourceEntry(Base):
    """What the last sync saw at a path: its version (a file's size and mtime, a page's
    ETag and Last-Modified), its content hash and (web pages) its links."""

    __tablename__ = "source_entries"

    source: Mapped[str] = mapped_column(
        ForeignKey("sources.name", ondelete="CASCADE"), primary_key=True
    )
    path: Mapped[str] = mapped_column(Text, primary_key=True)
    version: Mapped[str] = mapped_column(Text, default="", server_default="")
    content_hash: Mapped[str] = mapped_column(String(64))
    links: Mapped[list[str]] = mapped_column(JSONB, default=list, server_default="[]")
    document_id: Mapped[str] = mapped_column(String(512))


class Document(Base):
    __tablename__ = "documents"
    __table_args__ = (
        Index("ix_documents_source_path", "source", "path"),
        Index("ix_documents_readers", "readers", postgresql_using="gin"),
    )

    # Its source's name and its path inside it ("docs:beta/README.md"); for the upload
    # source the path alone (the ids uploads have always had).
    id: Mapped[str] = mapped_column(String(512), primary_key=True)
    title: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(
        ForeignKey("sources.name", ondelete="CASCADE"), server_default=UPLOAD_SOURCE
    )
    path: Mapped[str] = mapped_column(Text)
    content_type: Mapped[str] = mapped_column(String(128))
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
    # Of what the parser read (tandem.worker.pipeline.content_hash): unchanged, nothing is
    # parsed, chunked or embedded again.
    content_hash: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    chunk_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )
    readers: Mapped[list[str]] = _readers()
    owner_id: Mapped[int | None] = _owner()  # who uploaded it: they always may read it

    chunks: Mapped[list[Chunk]] = relationship(
        back_populates="document", cascade="all, delete-orphan", passive_deletes=True
    )


class Chunk(Base):
    __tablename__ = "chunks"
    __table_args__ = (
        # Exactly one copy of each chunk, however often a document is re-indexed.
        UniqueConstraint("document_id", "ordinal", name="uq_chunks_document_ordinal"),
        Index(
            "ix_chunks_embedding_hnsw",
            "embedding",
            postgresql_using="hnsw",
            postgresql_ops={"embedding": "vector_cosine_ops"},
        ),
        Index("ix_chunks_metadata", "metadata", postgresql_using="gin"),
        Index("ix_chunks_readers", "readers", postgresql_using="gin"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    document_id: Mapped[str] = mapped_column(
        ForeignKey("documents.id", ondelete="CASCADE"), index=True
    )
    ordinal: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(Text)
    # The document's, so filters by source and path, and access, need no join.
    source: Mapped[str] = mapped_column(String(64), server_default=UPLOAD_SOURCE)
    path: Mapped[str] = mapped_column(Text)
    readers: Mapped[list[str]] = _readers()
    content_type: Mapped[str] = mapped_column(String(128))
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
    text: Mapped[str] = mapped_column(Text)
    token_count: Mapped[int] = mapped_column(Integer)
    embedding: Mapped[Any] = mapped_column(Vector(EMBEDDING_DIMENSIONS))
    # The analysed text; triggers (migration 0002) turn it into BM25 postings, where title
    # lexemes (weight A) count more than body lexemes.
    tsv: Mapped[Any] = mapped_column(
        TSVECTOR,
        Computed(
            f"setweight(to_tsvector('{TEXT_SEARCH_CONFIG}', coalesce(title, '')), 'A') || "
            f"setweight(to_tsvector('{TEXT_SEARCH_CONFIG}', text), 'B')",
            persisted=True,
        ),
    )

    document: Mapped[Document] = relationship(back_populates="chunks")


class IndexAttempt(Base):
    """One upload: survives a Redis loss, so progress and errors can always be read."""

    __tablename__ = "index_attempts"
    __table_args__ = (
        Index(
            "index_attempts_succeeded_lsn",
            "succeeded_lsn",
            postgresql_where=text("succeeded_lsn IS NOT NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    status: Mapped[AttemptStatus] = mapped_column(
        _status_enum("attempt_status"), default=AttemptStatus.QUEUED, index=True
    )
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # A sync still adding items: its workers must not finish it yet.
    collecting: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    # The WAL insert position when it succeeded (after every item's commit): a replica
    # replayed past it can serve its documents (tandem.db.replicas). Written in SQL.
    succeeded_lsn: Mapped[str | None] = mapped_column(PgLsn)

    items: Mapped[list[IndexAttemptItem]] = relationship(
        back_populates="attempt",
        cascade="all, delete-orphan",
        order_by="IndexAttemptItem.position",
    )


class IndexAttemptItem(Base):
    """One file or document of an attempt; its bytes wait here until indexed."""

    __tablename__ = "index_attempt_items"
    __table_args__ = (
        UniqueConstraint("attempt_id", "position", name="uq_items_attempt_pos"),
        # What workers claim from: the unfinished items, oldest first.
        Index(
            "ix_index_attempt_items_unfinished",
            "id",
            postgresql_where=text("status IN ('queued', 'running')"),
        ),
        Index("ix_index_attempt_items_lease_owner", "lease_owner"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    attempt_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("index_attempts.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int] = mapped_column(Integer)
    document_id: Mapped[str] = mapped_column(String(512))
    source: Mapped[str] = mapped_column(String(64), server_default=UPLOAD_SOURCE)
    filename: Mapped[str] = mapped_column(Text)  # the document's path in its source
    content_type: Mapped[str | None] = mapped_column(String(128))
    title: Mapped[str | None] = mapped_column(Text)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
    # Cleared once indexed: the document index holds the text from then on.
    payload: Mapped[bytes | None] = mapped_column(LargeBinary)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[AttemptStatus] = mapped_column(
        _status_enum("attempt_item_status"), default=AttemptStatus.QUEUED
    )
    error: Mapped[str | None] = mapped_column(Text)
    chunk_count: Mapped[int] = mapped_column(Integer, default=0)
    # How it was indexed: added, updated or unchanged (nothing embedded); and how many of
    # its chunks were embedded (the others reused their stored vectors).
    outcome: Mapped[str | None] = mapped_column(String(16))
    embedded_chunks: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # What its document will be readable by, and who sent it.
    readers: Mapped[list[str]] = _readers()
    owner_id: Mapped[int | None] = _owner()
    # The work queue (tandem.work_queue.claims): a claim bumps `claims` (the fencing token of
    # its write) and leases the item to one worker until `lease_expires_at`; `failures`
    # counts unexpected errors and dead workers; a retry waits until `not_before`.
    claims: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    not_before: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    attempt: Mapped[IndexAttempt] = relationship(back_populates="items")


class ApiKey(Base):
    __tablename__ = "api_keys"
    __table_args__ = (
        CheckConstraint("scope IN ('search', 'ingest', 'admin')", name="api_keys_scope_check"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(16))
    # SHA-256 of a 256-bit random key: no salt or slow hash needed at that entropy.
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # None: a service key. Scope: search, ingest or admin (tandem.db.principals.Scope).
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    scope: Mapped[str] = mapped_column(String(16), default="admin", server_default="admin")
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
