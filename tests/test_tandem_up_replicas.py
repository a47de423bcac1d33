"""`tandem up --read-replicas N`: what it would run, in-process (the standbys themselves
are tested against a real primary in test_read_replicas.py)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tandem.config import ModelServerSettings, StorageSettings
from tandem.local.stack import LocalPorts, local_stack_specs, replica_service_names


def test_standbys_start_after_the_primary_and_serve_the_api_reads(tmp_path: Path) -> None:
    storage = StorageSettings(database_url=None, redis_url=None, data_dir=tmp_path)
    ports = LocalPorts(postgres=6100, replicas_from=6200)
    specs, banner = local_stack_specs(ModelServerSettings(), storage, ports, read_replicas=2)
    names = [spec.name for spec in specs]
    assert names[:3] == ["postgres", "postgres-replica-1", "postgres-replica-2"]
    for number, spec in enumerate(specs[1:3], 1):
        argv = spec.argv
        assert argv[argv.index("--data-dir") + 1] == str(tmp_path / f"postgres-replica-{number}")
        assert argv[argv.index("--port") + 1] == str(6199 + number)
        assert argv[argv.index("--primary-port") + 1] == "6100"
        assert spec.ready_check is not None
        assert f"postgres-replica-{number}" in banner and f"127.0.0.1:{6199 + number}" in banner
    api = next(spec for spec in specs if spec.name == "api-server")
    reads = api.env["DATABASE_READ_URLS"].split(",")
    assert [urlsplit(url).port for url in reads] == [6200, 6201]
    # The standbys' roles are the primary's: its password.
    primary = urlsplit(api.env["DATABASE_URL"])
    assert {urlsplit(url).password for url in reads} == {primary.password}
    worker = next(spec for spec in specs if spec.name == "background-worker")
    assert "DATABASE_READ_URLS" not in worker.env  # workers write: the primary only
    for url in reads:
        password = urlsplit(url).password
        assert password and password not in banner


def test_no_replicas_by_default_and_none_without_the_local_postgres(tmp_path: Path) -> None:
    storage = StorageSettings(database_url=None, redis_url=None, data_dir=tmp_path)
    specs, _ = local_stack_specs(ModelServerSettings(), storage, LocalPorts())
    assert not [s for s in specs if s.name.startswith("postgres-replica")]
    assert "DATABASE_READ_URLS" not in next(s for s in specs if s.name == "api-server").env
    given = StorageSettings(database_url="postgresql://x@db/tandem", data_dir=tmp_path)
    with pytest.raises(ValueError, match="--read-replicas needs the local PostgreSQL"):
        local_stack_specs(ModelServerSettings(), given, LocalPorts(), read_replicas=1)


def test_tandem_logs_knows_the_replicas_that_wrote_logs(tmp_path: Path) -> None:
    for name in ("postgres-replica-1.log", "postgres-replica-1.log.1", "postgres-replica-2.log"):
        (tmp_path / name).write_text("")
    (tmp_path / "postgres.log").write_text("")
    assert replica_service_names(tmp_path) == ["postgres-replica-1", "postgres-replica-2"]
