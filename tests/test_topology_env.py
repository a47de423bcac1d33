""".env.example and the Compose environment: exactly the variables the code reads, valid values."""

from __future__ import annotations

import pytest

import tandem.config
from tests import deploy_support as ds
from tests.topology_support import (
    TANDEM_SERVICES,
    compose_service,
)

# --- .env.example ----------------------------------------------------------------------------


def test_env_example_lists_exactly_the_variables_the_code_reads() -> None:
    listed = set(ds.read_env_example())
    expected = ds.expected_env_vars()
    assert not expected - listed, f"read by the code, missing: {sorted(expected - listed)}"
    assert not listed - expected, f"not read by the code: {sorted(listed - expected)}"


@pytest.fixture
def env_example_environment(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {k: v for k, v in ds.read_env_example().items() if v is not None}
    for name in ds.code_env_vars():
        monkeypatch.delenv(name, raising=False)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


def test_env_example_values_are_valid_settings(env_example_environment: dict[str, str]) -> None:
    for cls in ds._settings_classes():
        cls()  # raises on any invalid value
    settings = tandem.config.ApiSettings()
    assert settings.model_server_host == "inference_model_server"
    worker = tandem.config.WorkerSettings()
    assert worker.indexing_model_server_host == "indexing_model_server"


def test_compose_passes_only_variables_the_code_reads() -> None:
    expected = ds.expected_env_vars()
    for name in TANDEM_SERVICES:
        env = compose_service(name).get("environment") or {}
        assert set(env) <= expected, (name, sorted(set(env) - expected))
