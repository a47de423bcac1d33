"""BM25's statistics tables, kept by triggers on `chunks` (migration 0002;
tandem.index.bm25 reads them). The application never writes these tables itself.
tandem.db.schema gathers them with the rest of the schema."""

from __future__ import annotations

from sqlalchemy import (
    REAL,
    BigInteger,
    Boolean,
    CheckConstraint,
    Double,
    Identity,
    Integer,
    PrimaryKeyConstraint,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from tandem.db.models import Base


class Bm25Corpus(Base):
    __tablename__ = "bm25_corpus"
    __table_args__ = (CheckConstraint("singleton", name="bm25_corpus_singleton_check"),)

    singleton: Mapped[bool] = mapped_column(Boolean, primary_key=True, default=True)
    chunks: Mapped[int] = mapped_column(BigInteger, default=0)
    total_length: Mapped[float] = mapped_column(Double, default=0.0)
    title_weight: Mapped[float] = mapped_column(REAL)


class Bm25Term(Base):
    __tablename__ = "bm25_terms"

    id: Mapped[int] = mapped_column(Integer, Identity(always=True), primary_key=True)
    lexeme: Mapped[str] = mapped_column(Text, unique=True)
    df: Mapped[int] = mapped_column(Integer)
    max_tf: Mapped[float] = mapped_column(REAL)
    min_length: Mapped[float] = mapped_column(REAL)


class Bm25Posting(Base):
    __tablename__ = "bm25_postings"
    # The migrations also index each term's postings by impact (`bm25_postings_impact`),
    # on an expression tandem.index.bm25_formula writes: the index layer owns BM25's
    # formula, and this layer cannot import it (tests/test_bm25_formula.py checks it).
    __table_args__ = (
        PrimaryKeyConstraint("term_id", "chunk_id", postgresql_include=["tf", "length"]),
    )

    term_id: Mapped[int] = mapped_column(Integer)
    chunk_id: Mapped[int] = mapped_column(BigInteger)
    tf: Mapped[float] = mapped_column(REAL)
    length: Mapped[float] = mapped_column(REAL)
