"""Engine and session factories; built by each process's app factory, never at import."""

from __future__ import annotations

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker


def normalize_url(url: str) -> str:
    """Accept plain `postgresql://` URLs (as Compose and Kubernetes write them)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def make_engine(url: str, *, pool_size: int = 10, connect_timeout: int | None = None) -> Engine:
    """`connect_timeout` (seconds): for servers a caller can do without (read replicas),
    so an unreachable one costs a bounded wait before the next is tried."""
    return create_engine(
        normalize_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,  # survive a database restart without a 500 on the next request
        connect_args={} if connect_timeout is None else {"connect_timeout": connect_timeout},
    )


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)
