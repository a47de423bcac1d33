"""Password authentication for the local PostgreSQL.

TCP connections need the superuser's password (scram-sha-256); the unix socket stays
trusted, as it lives in a directory only the server's own user (and root) can enter. That
is also how the password is set: over the socket, on a server that listens on no TCP port.

A data directory is secured when its marker holds the digest of the current password
file: a cluster from before passwords (trust for everyone on 127.0.0.1, no marker) or one
whose password file was deleted (a new one is made) is secured again in place, its data
untouched.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import psycopg
from psycopg import sql

AUTH_MARKER = "tandem_auth.done"
HBA_FILE = "pg_hba.conf"
PG_HBA = """\
# Written by Tandem (tandem.local.services.postgres_auth); rewritten when the password changes.
# The unix socket is in a directory only the server's own user can enter: trusted. Every
# TCP connection needs the password, which Tandem keeps beside the data directory.
# TYPE  DATABASE        USER            ADDRESS                 METHOD
local   all             all                                     trust
local   replication     all                                     trust
host    all             all             127.0.0.1/32            scram-sha-256
host    all             all             ::1/128                 scram-sha-256
host    replication     all             127.0.0.1/32            scram-sha-256
host    replication     all             ::1/128                 scram-sha-256
"""


def _digest(password: str) -> str:
    return hashlib.sha256(password.encode()).hexdigest()


def is_secured(data_dir: Path, password: str) -> bool:
    marker = data_dir / AUTH_MARKER
    try:
        return marker.read_text().strip() == _digest(password)
    except FileNotFoundError:
        return False


def write_hba(data_dir: Path) -> None:
    """Rewritten in place, so the file keeps its owner (the server's user, when we are
    root) and mode; read by the server when it next starts."""
    with (data_dir / HBA_FILE).open("r+") as file:
        file.truncate(0)
        file.write(PG_HBA)


def set_password(conninfo: str, user: str, password: str) -> None:
    """Set `user`'s password over a trusted (socket) connection. The server is sent only
    the SCRAM verifier, computed here, so the password itself is never in its logs."""
    with psycopg.connect(conninfo, autocommit=True) as admin:
        verifier = admin.pgconn.encrypt_password(
            password.encode(), user.encode(), b"scram-sha-256"
        ).decode()
        admin.execute(
            sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(user), sql.Literal(verifier))
        )


def mark_secured(data_dir: Path, password: str) -> None:
    (data_dir / AUTH_MARKER).write_text(_digest(password) + "\n")
