"""The Compose file (as `docker compose config` resolves it with .env.example), and that
it runs what Kubernetes runs."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from tests.topology_support import (
    COMPOSE_TO_KUBERNETES,
    MODEL_CACHE_PATH,
    MODEL_SERVER_PORT,
    TANDEM_SERVICES,
    compose,
    compose_env,
    compose_service,
    container,
    cpu_millicores,
    env_sources,
    env_values,
    get,
    memory_bytes,
)

# --- Docker Compose ---------------------------------------------------------------------------


def test_compose_has_the_seed_services() -> None:
    assert set(compose()["services"]) == set(COMPOSE_TO_KUBERNETES)


def test_compose_model_servers_share_one_image_and_differ_only_by_indexing_only() -> None:
    inference = compose_service("inference_model_server")
    indexing = compose_service("indexing_model_server")
    assert inference["image"] == indexing["image"] == "tandem/model-server:0.1.0"
    assert inference["build"] == indexing["build"]
    assert compose_env("indexing_model_server")["INDEXING_ONLY"] == "True"
    for name in compose()["services"]:
        if name != "indexing_model_server":
            assert "INDEXING_ONLY" not in (compose_service(name).get("environment") or {}), name
    assert compose_env("inference_model_server")["MODEL_SERVER_PORT"] == str(MODEL_SERVER_PORT)
    assert compose_env("indexing_model_server")["INDEXING_MODEL_SERVER_PORT"] == str(
        MODEL_SERVER_PORT
    )
    for name, volume in (
        ("inference_model_server", "model_cache_huggingface"),
        ("indexing_model_server", "indexing_huggingface_model_cache"),
    ):
        service = compose_service(name)
        assert service["expose"] == [str(MODEL_SERVER_PORT)]
        mounts = [(v["source"], v["target"].rstrip("/")) for v in service["volumes"]]
        assert mounts == [(volume, MODEL_CACHE_PATH)]


def test_compose_api_server_calls_inference_and_worker_calls_indexing() -> None:
    api, worker = compose_env("api_server"), compose_env("background")
    assert api["MODEL_SERVER_HOST"] == "inference_model_server"
    assert api["MODEL_SERVER_PORT"] == compose_service("inference_model_server")["expose"][0]
    assert worker["INDEXING_MODEL_SERVER_HOST"] == "indexing_model_server"
    assert (
        worker["INDEXING_MODEL_SERVER_PORT"]
        == compose_service("indexing_model_server")["expose"][0]
    )
    assert not {"INDEXING_MODEL_SERVER_HOST", "INDEXING_MODEL_SERVER_PORT"} & set(api)
    assert not {"MODEL_SERVER_HOST", "MODEL_SERVER_PORT"} & set(worker)
    assert api["TANDEM_OPEN_ACCESS"] == "false"


def test_compose_waits_for_healthy_dependencies() -> None:
    services = compose()["services"]
    expected = {
        "api_server": {"relational_db", "cache", "inference_model_server"},
        "background": {"relational_db", "cache", "indexing_model_server"},
        "web_server": {"api_server"},
        "nginx": {"api_server", "web_server"},
    }
    for name, dependencies in expected.items():
        depends = services[name]["depends_on"]
        assert set(depends) == dependencies, name
        for dependency, how in depends.items():
            assert how["condition"] == "service_healthy", (name, dependency)
    for name, service in services.items():
        check = service.get("healthcheck", {})
        assert check["start_period"], name
        if name == "background":
            # No HTTP: the age of the heartbeat file, read by the shell.
            assert check["test"][0] == "CMD-SHELL"
            assert "TANDEM_WORKER_HEARTBEAT_FILE" in check["test"][1]
            assert compose_env(name)["TANDEM_WORKER_HEARTBEAT_FILE"].startswith("/tmp/")
            continue
        assert check["test"][0] == "CMD"


def test_compose_gives_the_model_server_key_to_both_servers_and_their_clients() -> None:
    keyed = {"inference_model_server", "indexing_model_server", "api_server", "background"}
    for name in compose()["services"]:
        env = compose_service(name).get("environment") or {}
        assert ("TANDEM_MODEL_SERVER_API_KEY" in env) == (name in keyed), name
    values = {compose_env(name)["TANDEM_MODEL_SERVER_API_KEY"] for name in keyed}
    assert len(values) == 1 and all(values)


def test_compose_sets_resource_limits_on_every_service() -> None:
    for name, service in compose()["services"].items():
        limits = service["deploy"]["resources"]["limits"]
        assert float(limits["cpus"]) > 0 and int(limits["memory"]) > 0, name


# --- Compose and Kubernetes agree -----------------------------------------------------------


def _same_address(compose_value: str, kubernetes_value: str) -> bool:
    if compose_value.startswith("dns+"):
        # Every replica: Compose's service name, Kubernetes' headless `-pods` Service.
        parts = urlsplit(compose_value.removeprefix("dns+"))
        name = f"{COMPOSE_TO_KUBERNETES[str(parts.hostname)]}-pods"
        return compose_value.replace(f"//{parts.hostname}:", f"//{name}:") == kubernetes_value
    return COMPOSE_TO_KUBERNETES.get(compose_value, compose_value) == kubernetes_value


@pytest.mark.parametrize("service", TANDEM_SERVICES)
def test_compose_and_kubernetes_run_the_same_containers(service: str) -> None:
    workload = get("Deployment", COMPOSE_TO_KUBERNETES[service])
    main = container(workload)
    in_compose = compose_service(service)
    assert main["image"] == in_compose["image"]
    assert main["args"] == in_compose["command"]
    ports = [str(p["containerPort"]) for p in main.get("ports", [])]
    assert ports == in_compose.get("expose", [])
    # Every setting Kubernetes gives is given by Compose too, with the same value (host
    # names translated); Compose passes more tunables through from .env.
    in_compose_env = compose_env(service)
    for name, value in env_values(workload).items():
        assert name in in_compose_env, (service, name)
        assert _same_address(in_compose_env[name], value), (service, name, value)
    for name, (kind, _) in env_sources(workload).items():
        if kind == "secret":
            assert name in in_compose_env, (service, name)


@pytest.mark.parametrize("service", ["inference_model_server", "indexing_model_server"])
def test_compose_and_kubernetes_size_the_model_servers_alike(service: str) -> None:
    main = container(get("Deployment", COMPOSE_TO_KUBERNETES[service]))
    deploy = compose_service(service)["deploy"]["resources"]
    assert cpu_millicores(main["resources"]["limits"]["cpu"]) == cpu_millicores(
        deploy["limits"]["cpus"]
    )
    assert memory_bytes(main["resources"]["limits"]["memory"]) == int(deploy["limits"]["memory"])
    assert cpu_millicores(main["resources"]["requests"]["cpu"]) == cpu_millicores(
        deploy["reservations"]["cpus"]
    )
    assert memory_bytes(main["resources"]["requests"]["memory"]) == int(
        deploy["reservations"]["memory"]
    )
