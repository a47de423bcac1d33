"""Shared by the deployment topology tests: the seed's topology constants and readers of
the Kubernetes manifests and the Compose file (as `docker compose config` resolves it).
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from tests import deploy_support as ds

NAMESPACE = "tandem"
MODEL_CACHE_PATH = "/app/.cache/huggingface"
MODEL_SERVER_PORT = 9000
# The seed's Compose service names and their Kubernetes counterparts (Services/Deployments).
COMPOSE_TO_KUBERNETES = {
    "inference_model_server": "inference-model-server",
    "indexing_model_server": "indexing-model-server",
    "api_server": "api-server",
    "background": "background-worker",
    "web_server": "web-server",
    "relational_db": "postgresql",
    "cache": "redis",
    "nginx": "nginx",
}
TANDEM_SERVICES = (
    "inference_model_server",
    "indexing_model_server",
    "api_server",
    "background",
    "web_server",
)
SEED_FILES = [
    "00-namespace.yaml",
    "02-postgresql.yaml",
    "04-redis.yaml",
    "05-configmap.yaml",
    "06-inference-model-server.yaml",
    "06-indexing-model-server.yaml",
    "07-api-server.yaml",
    "07-background-worker.yaml",
    "08-web-server.yaml",
    "09-nginx.yaml",
]
CPU_RANGE = (1000, 4000)  # millicores, the seed's range for each model server
INDEXING_CPU_REQUEST = 250  # millicores: the indexing server's weight, 1/8 of inference's
MEMORY_RANGE = (2 * 1024**3, 8 * 1024**3)


@cache
def resources() -> tuple[dict[str, Any], ...]:
    return tuple(ds.applied_resources())


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [r for r in resources() if r["kind"] == kind]


def get(kind: str, name: str) -> dict[str, Any]:
    found = [r for r in of_kind(kind) if r["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def workloads() -> list[dict[str, Any]]:
    return of_kind("Deployment") + of_kind("StatefulSet")


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def container(workload: dict[str, Any]) -> dict[str, Any]:
    containers = pod_spec(workload)["containers"]
    assert len(containers) == 1
    found: dict[str, Any] = containers[0]
    return found


def configmap() -> dict[str, str]:
    data: dict[str, str] = get("ConfigMap", "tandem-config")["data"]
    return data


def env_sources(workload: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """env name -> ("value", v) | ("configmap", key) | ("secret", "name/key")."""
    sources: dict[str, tuple[str, str]] = {}
    for item in container(workload).get("env", []):
        if "value" in item:
            sources[item["name"]] = ("value", item["value"])
        elif "configMapKeyRef" in item["valueFrom"]:
            ref = item["valueFrom"]["configMapKeyRef"]
            assert ref["name"] == "tandem-config"
            sources[item["name"]] = ("configmap", ref["key"])
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            sources[item["name"]] = ("secret", f"{ref['name']}/{ref['key']}")
    assert "envFrom" not in container(workload), "each container takes named keys only"
    return sources


def env_values(workload: dict[str, Any]) -> dict[str, str]:
    """The container's environment with configmap refs resolved (secrets left out)."""
    values = {}
    for name, (kind, ref) in env_sources(workload).items():
        if kind == "value":
            values[name] = ref
        elif kind == "configmap":
            values[name] = configmap()[ref]
    return values


def labels_match(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def container_port(workload: dict[str, Any], target: int | str) -> int:
    for port in container(workload)["ports"]:
        if target in (port["containerPort"], port.get("name")):
            return int(port["containerPort"])
    raise AssertionError(f"{workload['metadata']['name']} has no port {target}")


def cpu_millicores(value: str | int) -> int:
    text = str(value)
    return int(text[:-1]) if text.endswith("m") else int(float(text) * 1000)


def memory_bytes(value: str) -> int:
    units = {"Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "k": 1000, "M": 1000**2, "G": 1000**3}
    for suffix, factor in units.items():
        if value.endswith(suffix):
            return int(float(value[: -len(suffix)]) * factor)
    return int(value)


@cache
def compose() -> dict[str, Any]:
    return ds.compose_config()


def compose_service(name: str) -> dict[str, Any]:
    service: dict[str, Any] = compose()["services"][name]
    return service


def compose_env(name: str) -> dict[str, str]:
    env = compose_service(name).get("environment") or {}
    return {k: v for k, v in env.items() if v is not None}


def compose_memory_bytes(value: str | int) -> int:
    return memory_bytes(str(value).replace("g", "Gi").replace("m", "Mi"))


def dockerfile(name: str) -> str:
    return (ds.DOCKER / f"{name}.Dockerfile").read_text()


def stages(text: str) -> dict[str, str]:
    """Stage name -> its instructions (comments dropped)."""
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    parts = re.split(r"^FROM\s+\S+\s+AS\s+(\S+)\s*$", body, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def dockerfile_env(name: str) -> dict[str, str]:
    runtime = stages(dockerfile(name))["runtime"]
    env: dict[str, str] = {}
    for block in re.findall(r"^ENV\s+((?:.*\\\n)*.*)$", runtime, flags=re.M):
        for pair in block.replace("\\\n", " ").split():
            key, _, value = pair.partition("=")
            env[key] = value
    return env
