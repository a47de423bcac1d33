"""The model server key and the worker's liveness in both deployments: one Secret key
(Kubernetes) or .env variable (Compose) for both model servers and their two clients, and
the worker's heartbeat probe, the same shell test in Compose and Kubernetes."""

from __future__ import annotations

from tests import deploy_support as ds
from tests.topology_support import (
    compose_env,
    compose_service,
    container,
    env_sources,
    env_values,
    get,
)

KEYED = ["inference-model-server", "indexing-model-server", "api-server", "background-worker"]


def test_the_model_server_key_comes_from_the_secret_for_servers_and_clients() -> None:
    for name in KEYED:
        sources = env_sources(get("Deployment", name))
        assert sources["TANDEM_MODEL_SERVER_API_KEY"] == (
            "secret",
            "tandem-secrets/TANDEM_MODEL_SERVER_API_KEY",
        ), name
    for name in ("web-server", "nginx"):
        assert "TANDEM_MODEL_SERVER_API_KEY" not in env_sources(get("Deployment", name))
    example = {
        s["metadata"]["name"]: s["stringData"]
        for s in ds.load_documents(ds.KUBERNETES / "01-secrets.example.yaml")
    }
    assert example["tandem-secrets"]["TANDEM_MODEL_SERVER_API_KEY"]


def test_the_worker_is_probed_by_its_heartbeat_file_as_compose_checks_it() -> None:
    worker = get("Deployment", "background-worker")
    main = container(worker)
    path = env_values(worker)["TANDEM_WORKER_HEARTBEAT_FILE"]
    assert path == compose_env("background")["TANDEM_WORKER_HEARTBEAT_FILE"]
    assert path.startswith("/tmp/")
    assert any(m["mountPath"] == "/tmp" for m in main["volumeMounts"])  # writable there
    compose_test = compose_service("background")["healthcheck"]["test"]
    assert compose_test[0] == "CMD-SHELL"
    for probe in ("startupProbe", "livenessProbe"):
        command = main[probe]["exec"]["command"]
        assert command[:2] == ["sh", "-c"]
        assert command[2] == compose_test[1].replace("$$", "$"), probe
        assert "$TANDEM_WORKER_HEARTBEAT_FILE" in command[2]
    # A frozen worker acts on no SIGTERM: killed soon, not after the pod's grace period.
    assert main["livenessProbe"]["terminationGracePeriodSeconds"] <= 15
    assert "readinessProbe" not in main  # no Service routes to it
