"""The data commands reach the local stack's database from the data dir when
DATABASE_URL is unset: a real local PostgreSQL at `tandem up`'s port, its password read
from the data dir, and `tandem users` / `groups` / `api-key` / `db upgrade` against it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tandem.local.services.postgres import running_postgres
from tandem.local.stack import LocalPorts


def _free(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.slow
def test_principals_commands_use_the_local_stack_without_a_database_url(
    tmp_path: Path,
) -> None:
    port = LocalPorts().postgres
    if not _free(port):
        pytest.skip(f"port {port} is taken: a local stack is running on this machine")
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env["TANDEM_DATA_DIR"] = str(tmp_path)

    def tandem(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tandem.cli", *args],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )

    refused = tandem("users", "list")
    assert refused.returncode == 1 and "cannot reach the database" in refused.stderr
    with running_postgres(tmp_path / "postgres", port):
        assert tandem("db", "upgrade").returncode == 0
        assert tandem("users", "add", "zoe", "--admin").returncode == 0
        assert tandem("groups", "add", "ops", "--member", "zoe").returncode == 0
        made = tandem("api-key", "create", "--user", "zoe", "--scope", "ingest")
        assert made.returncode == 0, made.stderr
        assert made.stdout.splitlines()[0].startswith("tdm_")
        listed = tandem("users", "list")
        assert listed.returncode == 0 and "zoe" in listed.stderr and "ops" in listed.stderr
        keys = tandem("api-key", "list")
        assert "ingest" in keys.stderr and "zoe" in keys.stderr
        duplicate = tandem("users", "add", "zoe")
        assert duplicate.returncode == 1 and "exists already" in duplicate.stderr
