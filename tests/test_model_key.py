"""The local stack's model server key, in-process: made once (0600), given by `tandem up`
to both model servers and their two clients only, and read back by `tandem reindex`."""

from __future__ import annotations

import stat
from pathlib import Path

from tandem.commands.data import local_stack_urls
from tandem.config import ModelServerSettings, StorageSettings, WorkerSettings
from tandem.local.services.model_key import ensure_key, key_path, read_key
from tandem.local.stack import LocalPorts, local_stack_specs

KEYED = {"inference-model-server", "indexing-model-server", "api-server", "background-worker"}


def test_the_key_is_made_once_and_kept_private(tmp_path: Path) -> None:
    assert read_key(tmp_path) is None
    key = ensure_key(tmp_path)
    assert len(key) >= 40 and key == ensure_key(tmp_path) == read_key(tmp_path)
    assert stat.S_IMODE(key_path(tmp_path).stat().st_mode) == 0o600
    key_path(tmp_path).chmod(0o644)  # loosened by someone: taken back
    assert ensure_key(tmp_path) == key
    assert stat.S_IMODE(key_path(tmp_path).stat().st_mode) == 0o600
    assert ensure_key(tmp_path / "other") != key


def test_up_gives_the_key_to_the_model_servers_and_their_clients_only(tmp_path: Path) -> None:
    storage = StorageSettings(
        database_url="postgresql+psycopg://x@127.0.0.1/x", redis_url="redis://x", data_dir=tmp_path
    )
    specs, _ = local_stack_specs(ModelServerSettings(), storage, LocalPorts())
    key = read_key(tmp_path)
    assert key
    given = {spec.name for spec in specs if spec.env.get("TANDEM_MODEL_SERVER_API_KEY") == key}
    assert given == KEYED
    assert not any("TANDEM_MODEL_SERVER_API_KEY" in s.env for s in specs if s.name not in KEYED)
    worker = next(spec for spec in specs if spec.name == "background-worker")
    assert worker.heartbeat_file == tmp_path / "run" / "background-worker.heartbeat"
    assert worker.env["TANDEM_WORKER_HEARTBEAT_FILE"] == str(worker.heartbeat_file)
    assert worker.heartbeat_stale_seconds == WorkerSettings().stale_seconds
    # A key set in the environment is the one used.
    chosen = ModelServerSettings(api_key="chosen-key")
    specs, _ = local_stack_specs(chosen, storage, LocalPorts())
    assert {s.env.get("TANDEM_MODEL_SERVER_API_KEY") for s in specs if s.name in KEYED} == {
        "chosen-key"
    }


def test_reindex_against_the_local_stack_reads_its_key(tmp_path: Path) -> None:
    key = ensure_key(tmp_path)
    local = local_stack_urls(WorkerSettings(database_url=None, redis_url=None, data_dir=tmp_path))
    assert local.model_server_api_key == key
    given = WorkerSettings(data_dir=tmp_path, model_server_api_key="set-by-hand")
    assert local_stack_urls(given).model_server_api_key == "set-by-hand"
