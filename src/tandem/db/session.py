"""Engine and session factories; built by each process's app factory, never at import."""

from __future__ import annotations

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from tandem.db.vector_param import register_vector_dumper


def normalize_url(url: str) -> str:
    """Accept plain `postgresql://` URLs (as Compose and Kubernetes write them)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def make_engine(
    url: str,
    *,
    pool_size: int = 10,
    connect_timeout: int | None = None,
    pre_ping: bool = True,
    recycle_seconds: int = -1,
) -> Engine:
    """`connect_timeout` (seconds): for servers a caller can do without (read replicas),
    so an unreachable one costs a bounded wait before the next is tried. `pre_ping`: test
    each connection with a round trip as it leaves the pool, so a database restart costs
    no request an error; without it (searches: a round trip fewer each), the caller
    retries once on a dropped connection, and the pool replaces every connection older
    than the failure (SQLAlchemy's optimistic disconnect handling); `recycle_seconds`
    then bounds how old a pooled connection gets (-1: unbounded)."""
    engine = create_engine(
        normalize_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=pre_ping,
        pool_recycle=recycle_seconds,
        connect_args={} if connect_timeout is None else {"connect_timeout": connect_timeout},
    )
    event.listen(engine, "connect", register_vector_dumper)
    return engine


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)
