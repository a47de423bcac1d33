"""The passwords of the local PostgreSQL and Redis: random, made once, kept in a file.

Each server's password lives beside its data directory (``<data dir>/postgres.password``
next to ``<data dir>/postgres``), readable by its owner only (0600): the directory itself
cannot hold it, since `initdb` wants an empty one, and `tandem up` needs the password
before the server has ever run, to hand its URL to the API server and the workers.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from tandem.local.services.process import ServiceError

# URL-safe: it goes into DATABASE_URL and REDIS_URL as it is.
PASSWORD_BYTES = 24


def password_file(data_dir: Path) -> Path:
    return data_dir.with_name(f"{data_dir.name}.password")


def read_or_create(path: Path) -> str:
    """The secret in `path`, created first (atomically, 0600) if it does not exist.

    `tandem up` and the server it starts may both get here first: the file appears whole
    or not at all (a hard link of a finished temporary file), and the loser reads it.
    """
    with contextlib.suppress(FileNotFoundError):
        return _read(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(PASSWORD_BYTES)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w") as file:
            file.write(secret + "\n")
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
    finally:
        temporary.unlink()
    return _read(path)


def _read(path: Path) -> str:
    secret = path.read_text().strip()
    if not secret:
        raise ServiceError(f"{path} is empty: delete it to have a new password made")
    return secret
