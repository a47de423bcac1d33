"""The deployment files agree with the seed's topology and with each other.

Parses deploy/kubernetes/*.yaml, deploy/docker-compose.yml (as `docker compose config`
resolves it with .env.example), the nginx config, the Dockerfiles and .env.example.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest

import tandem.config
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


# --- helpers ----------------------------------------------------------------------------


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


# --- Kubernetes: files and order ----------------------------------------------------------


def test_kustomization_lists_the_seed_files_in_deployment_order() -> None:
    listed = ds.kustomization()["resources"]
    assert listed == SEED_FILES
    on_disk = {p.name for p in ds.manifest_files()}
    assert on_disk == set(SEED_FILES) | {"01-secrets.example.yaml"}
    # 03 stays free for the seed's Vespa index, which this deployment does not use.
    assert not [name for name in on_disk if name.startswith("03-")]


def test_every_resource_is_in_the_tandem_namespace() -> None:
    for resource in resources():
        if resource["kind"] == "Namespace":
            assert resource["metadata"]["name"] == NAMESPACE
        elif resource["kind"] == "PriorityClass":  # cluster-scoped
            assert resource["metadata"]["name"].startswith("tandem-")
        else:
            assert resource["metadata"].get("namespace") == NAMESPACE, resource["metadata"]


# --- Kubernetes: the two model servers ---------------------------------------------------


def model_server_deployments() -> dict[str, dict[str, Any]]:
    return {role: get("Deployment", f"{role}-model-server") for role in ("inference", "indexing")}


def test_two_model_server_deployments_from_one_image() -> None:
    deployments = model_server_deployments()
    images = {container(d)["image"] for d in deployments.values()}
    assert len(images) == 1
    assert images == {"tandem/model-server:0.1.0"}
    labelled = [
        d
        for d in of_kind("Deployment")
        if d["metadata"]["labels"].get("app.kubernetes.io/component") == "model-server"
    ]
    assert sorted(d["metadata"]["name"] for d in labelled) == [
        "indexing-model-server",
        "inference-model-server",
    ]
    for role, deployment in deployments.items():
        app = {"app": f"{role}-model-server"}
        assert labels_match(app, deployment["metadata"]["labels"])
        assert labels_match(app, deployment["spec"]["template"]["metadata"]["labels"])
        assert deployment["spec"]["selector"]["matchLabels"] == app
        assert container(deployment)["args"] == ["tandem", "model-server"]


def test_indexing_only_is_set_on_the_indexing_model_server_alone() -> None:
    for workload in workloads():
        sources = env_sources(workload)
        if workload["metadata"]["name"] == "indexing-model-server":
            assert sources["INDEXING_ONLY"] == ("value", "True")
        else:
            assert "INDEXING_ONLY" not in sources, workload["metadata"]["name"]
    assert "INDEXING_ONLY" not in configmap()


def test_services_select_their_pods_and_target_declared_ports() -> None:
    for service in of_kind("Service"):
        selector = service["spec"]["selector"]
        selected = [
            w
            for w in workloads()
            if labels_match(selector, w["spec"]["template"]["metadata"]["labels"])
        ]
        assert len(selected) == 1, service["metadata"]["name"]
        assert selected[0]["metadata"]["name"] == service["metadata"]["name"]
        for port in service["spec"]["ports"]:
            container_port(selected[0], port["targetPort"])


@pytest.mark.parametrize("role", ["inference", "indexing"])
def test_model_server_service_is_cluster_ip_on_9000(role: str) -> None:
    name = f"{role}-model-server"
    service = get("Service", name)
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["selector"] == {"app": name}
    [port] = service["spec"]["ports"]
    assert port["port"] == MODEL_SERVER_PORT
    assert container_port(get("Deployment", name), port["targetPort"]) == MODEL_SERVER_PORT


@pytest.mark.parametrize("role", ["inference", "indexing"])
def test_model_server_resources_probes_cache_and_security(role: str) -> None:
    deployment = get("Deployment", f"{role}-model-server")
    main = container(deployment)
    resources_ = main["resources"]
    for kind in ("requests", "limits"):
        cpu = cpu_millicores(resources_[kind]["cpu"])
        memory = memory_bytes(resources_[kind]["memory"])
        # The indexing server's CPU request is a low scheduling weight (it yields CPUs to
        # queries on a shared node); its limit is the seed's.
        low = INDEXING_CPU_REQUEST if (role, kind) == ("indexing", "requests") else CPU_RANGE[0]
        assert low <= cpu <= CPU_RANGE[1], (kind, cpu)
        assert MEMORY_RANGE[0] <= memory <= MEMORY_RANGE[1], (kind, memory)
    assert main["readinessProbe"]["httpGet"]["path"] == "/api/ready"
    assert main["livenessProbe"]["httpGet"]["path"] == "/api/health"
    assert main["startupProbe"]["httpGet"]["path"] in ("/api/health", "/api/ready")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container_port(deployment, main[probe]["httpGet"]["port"]) == MODEL_SERVER_PORT
    # The model cache is a PVC of its own, mounted where the image's TANDEM_MODEL_CACHE is.
    claim = {"inference": "model-cache-huggingface", "indexing": "indexing-huggingface-model-cache"}
    volumes = {v["name"]: v for v in pod_spec(deployment)["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in main["volumeMounts"]}
    cache_volume = volumes[mounts[MODEL_CACHE_PATH]]
    assert cache_volume["persistentVolumeClaim"]["claimName"] == claim[role]
    get("PersistentVolumeClaim", claim[role])
    assert dockerfile_env("model-server")["TANDEM_MODEL_CACHE"] == MODEL_CACHE_PATH


def test_queries_outrank_bulk_indexing_on_a_shared_node() -> None:
    """CPU requests are the cgroup weights, PriorityClasses the eviction order, and the two
    roles prefer separate nodes where the cluster has them."""
    deployments = model_server_deployments()
    requests = {
        role: cpu_millicores(container(d)["resources"]["requests"]["cpu"])
        for role, d in deployments.items()
    }
    assert requests["inference"] >= 4 * requests["indexing"], requests
    classes = {c["metadata"]["name"]: c for c in of_kind("PriorityClass")}
    for role, deployment in deployments.items():
        spec = pod_spec(deployment)
        assert spec["priorityClassName"] == f"tandem-{role}"
        other = "indexing" if role == "inference" else "inference"
        [term] = spec["affinity"]["podAntiAffinity"][
            "preferredDuringSchedulingIgnoredDuringExecution"
        ]
        selector = term["podAffinityTerm"]["labelSelector"]["matchLabels"]
        assert selector == {"app": f"{other}-model-server"}
    assert classes["tandem-inference"]["value"] > 0 > classes["tandem-indexing"]["value"]
    assert classes["tandem-indexing"]["preemptionPolicy"] == "Never"
    assert env_sources(deployments["indexing"])["TANDEM_CPU_PRIORITY"] == ("value", "idle")
    # One precision for both: it comes from the ConfigMap.
    for deployment in deployments.values():
        assert env_sources(deployment)["TANDEM_PRECISION"][0] == "configmap"
    assert configmap()["TANDEM_PRECISION"] in ("int8", "fp32")
    shares = {
        name: compose_service(name)["cpu_shares"]
        for name in ("inference_model_server", "indexing_model_server")
    }
    assert shares["inference_model_server"] > 100 * shares["indexing_model_server"]


def test_every_pod_runs_as_non_root_without_privilege_escalation() -> None:
    for workload in workloads():
        pod = pod_spec(workload)["securityContext"]
        assert pod["runAsNonRoot"] is True
        assert pod["runAsUser"] != 0
        main = container(workload)["securityContext"]
        assert main["allowPrivilegeEscalation"] is False
        assert main["capabilities"]["drop"] == ["ALL"]
        assert main["readOnlyRootFilesystem"] is True


@pytest.mark.parametrize("role", ["inference", "indexing"])
def test_model_server_autoscaler_and_disruption_budget(role: str) -> None:
    name = f"{role}-model-server"
    hpa = get("HorizontalPodAutoscaler", name)
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": name,
    }
    assert hpa["spec"]["minReplicas"] >= 1
    assert hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"]
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]
    pdb = get("PodDisruptionBudget", name)
    assert pdb["spec"]["selector"]["matchLabels"] == {"app": name}


def test_every_disruption_budget_selects_a_workload() -> None:
    for pdb in of_kind("PodDisruptionBudget"):
        selector = pdb["spec"]["selector"]["matchLabels"]
        assert any(
            labels_match(selector, w["spec"]["template"]["metadata"]["labels"]) for w in workloads()
        ), pdb["metadata"]["name"]


# --- Kubernetes: who talks to whom ---------------------------------------------------------


def test_configmap_points_at_the_model_server_services() -> None:
    data = configmap()
    for prefix, name in (("", "inference-model-server"), ("INDEXING_", "indexing-model-server")):
        assert data[f"{prefix}MODEL_SERVER_HOST"] == name
        [port] = get("Service", name)["spec"]["ports"]
        assert data[f"{prefix}MODEL_SERVER_PORT"] == str(port["port"])


def test_api_server_gets_the_inference_server_and_workers_the_indexing_server() -> None:
    api = env_sources(get("Deployment", "api-server"))
    worker = env_sources(get("Deployment", "background-worker"))
    for key in ("MODEL_SERVER_HOST", "MODEL_SERVER_PORT"):
        assert api[key] == ("configmap", key)
        assert key not in worker
    for key in ("INDEXING_MODEL_SERVER_HOST", "INDEXING_MODEL_SERVER_PORT"):
        assert worker[key] == ("configmap", key)
        assert key not in api
    # Each model server binds the configmap's port of its own role.
    inference = env_sources(get("Deployment", "inference-model-server"))
    indexing = env_sources(get("Deployment", "indexing-model-server"))
    assert inference["MODEL_SERVER_PORT"] == ("configmap", "MODEL_SERVER_PORT")
    assert indexing["INDEXING_MODEL_SERVER_PORT"] == ("configmap", "INDEXING_MODEL_SERVER_PORT")


def test_passwords_come_from_secrets_never_the_configmap() -> None:
    for key, value in configmap().items():
        assert not re.search(r"PASSWORD|SECRET|API_KEY|_URL$", key), key
        assert "@" not in value, key
    example = {
        s["metadata"]["name"]: s["stringData"]
        for s in ds.load_documents(ds.KUBERNETES / "01-secrets.example.yaml")
    }
    for workload in workloads():
        for name, (kind, ref) in env_sources(workload).items():
            if name in ("DATABASE_URL", "REDIS_URL") or "PASSWORD" in name:
                assert kind == "secret", (workload["metadata"]["name"], name)
            if kind == "secret":
                secret, key = ref.split("/")
                assert key in example[secret], ref
    assert not of_kind("Secret"), "Secrets are created by hand (DEPLOYMENT.md), never applied"


def policy(app: str) -> dict[str, Any]:
    found = [
        p
        for p in of_kind("NetworkPolicy")
        if p["spec"]["podSelector"] == {"matchLabels": {"app": app}}
    ]
    assert len(found) == 1, app
    return found[0]


def peer_apps(rules: list[dict[str, Any]], direction: str) -> set[str]:
    """Apps named by podSelector peers; '*' for a rule open to any peer."""
    apps: set[str] = set()
    for rule in rules:
        peers = rule.get(direction)
        if not peers:
            apps.add("*")
            continue
        for peer in peers:
            assert set(peer) == {"podSelector"}, peer
            apps.add(peer["podSelector"]["matchLabels"]["app"])
    return apps


def egress_to(app: str, port: int) -> set[str]:
    """The apps whose egress rules allow connecting to `app` on `port`."""
    allowed = set()
    for item in of_kind("NetworkPolicy"):
        source = item["spec"]["podSelector"]["matchLabels"]["app"]
        for rule in item["spec"].get("egress", []):
            ports = {p["port"] for p in rule.get("ports", [])}
            targets = {p["podSelector"]["matchLabels"]["app"] for p in rule.get("to", [])}
            if (not ports or port in ports) and (not rule.get("to") or app in targets):
                allowed.add(source)
    return allowed


def test_every_pod_has_a_network_policy_for_both_directions() -> None:
    for workload in workloads():
        app = workload["spec"]["template"]["metadata"]["labels"]["app"]
        assert policy(app)["spec"]["policyTypes"] == ["Ingress", "Egress"]


@pytest.mark.parametrize(
    ("server", "client"),
    [("inference-model-server", "api-server"), ("indexing-model-server", "background-worker")],
)
def test_only_its_client_reaches_each_model_server(server: str, client: str) -> None:
    spec = policy(server)["spec"]
    assert peer_apps(spec["ingress"], "from") == {client}
    assert {p["port"] for rule in spec["ingress"] for p in rule["ports"]} == {MODEL_SERVER_PORT}
    assert spec["egress"] == []  # a model server calls no one, and never downloads
    assert egress_to(server, MODEL_SERVER_PORT) == {client}


def test_database_and_redis_serve_only_the_api_server_and_workers() -> None:
    for app in ("postgresql", "redis"):
        assert peer_apps(policy(app)["spec"]["ingress"], "from") == {
            "api-server",
            "background-worker",
        }
    assert peer_apps(policy("api-server")["spec"]["ingress"], "from") == {"nginx"}
    assert peer_apps(policy("web-server")["spec"]["ingress"], "from") == {"nginx"}
    assert peer_apps(policy("background-worker")["spec"]["ingress"], "from") == set()


def test_pods_that_call_out_may_resolve_names() -> None:
    for item in of_kind("NetworkPolicy"):
        egress = item["spec"]["egress"]
        if egress:
            dns = [r for r in egress if "to" not in r]
            assert dns, item["metadata"]["name"]
            assert {p["port"] for r in dns for p in r["ports"]} == {53}


# --- nginx ----------------------------------------------------------------------------------


def test_nginx_routes_to_the_api_and_web_services() -> None:
    conf = ds.NGINX_CONF.read_text()
    upstreams = ds.nginx_upstreams(conf)
    assert upstreams == {"tandem_api": "api-server:8080", "tandem_web": "web-server:3000"}
    assert re.search(r"location /api/ \{\s*proxy_pass http://tandem_api;", conf)
    assert re.search(r"location / \{\s*proxy_pass http://tandem_web;", conf)
    for address in upstreams.values():
        host, port = address.split(":")
        [service_port] = get("Service", host)["spec"]["ports"]
        assert service_port["port"] == int(port)
        compose_name = {v: k for k, v in COMPOSE_TO_KUBERNETES.items()}[host]
        assert host in compose_service(compose_name)["networks"]["default"]["aliases"]
        assert compose_service(compose_name)["expose"] == [port]


def test_nginx_body_limit_equals_the_api_upload_limit() -> None:
    conf = ds.NGINX_CONF.read_text()
    [limit] = re.findall(r"client_max_body_size (\d+)m;", conf)
    nginx_bytes = int(limit) * 1024 * 1024
    api_default = tandem.config.ApiSettings.model_fields["max_upload_bytes"].default
    assert nginx_bytes == api_default
    assert ds.read_env_example()["TANDEM_MAX_UPLOAD_BYTES"] == str(nginx_bytes)
    assert configmap()["TANDEM_MAX_UPLOAD_BYTES"] == str(nginx_bytes)
    assert compose_env("api_server")["TANDEM_MAX_UPLOAD_BYTES"] == str(nginx_bytes)
    assert f"exceeds {nginx_bytes} bytes" in conf  # nginx's 413 speaks the API's language


def test_kubernetes_and_compose_use_the_same_nginx_config() -> None:
    embedded, checksum = ds.embedded_nginx()
    assert embedded == ds.NGINX_CONF.read_text()
    assert checksum == ds.nginx_checksum(embedded)
    volumes = compose_service("nginx")["volumes"]
    assert [(v["source"], v["target"]) for v in volumes] == [
        (str(ds.NGINX_CONF), "/etc/nginx/conf.d/default.conf")
    ]
    assert container(get("Deployment", "nginx"))["image"] == compose_service("nginx")["image"]


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
        if name == "background":
            assert check.get("disable") is True
            continue
        assert check["start_period"], name
        assert check["test"][0] == "CMD"


def test_compose_sets_resource_limits_on_every_service() -> None:
    for name, service in compose()["services"].items():
        limits = service["deploy"]["resources"]["limits"]
        assert float(limits["cpus"]) > 0 and int(limits["memory"]) > 0, name


# --- Compose and Kubernetes agree -----------------------------------------------------------


def _same_address(compose_value: str, kubernetes_value: str) -> bool:
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


# --- images ------------------------------------------------------------------------------------


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


def test_images_are_multi_stage_with_torch_only_in_the_model_stage() -> None:
    model_server, backend = stages(dockerfile("model-server")), stages(dockerfile("backend"))
    shared = ["python-base", "runtime-venv", "model"]
    assert list(model_server) == [*shared, "runtime"]
    assert list(backend) == [*shared, "model-tokenizers", "runtime"]
    for name in shared:
        assert model_server[name] == backend[name], f"stage {name} differs between the images"
    assert "'.[prepare]'" in model_server["model"]
    assert "tandem models prepare" in model_server["model"]
    assert "pip install .\n" in model_server["runtime-venv"] + "\n"
    for image in (model_server, backend):
        assert "pip" not in image["runtime"]
        assert "USER 10001:10001" in image["runtime"]
    # The model server gets the prepared model; the backend only what workers read of it.
    assert "COPY --from=model /opt/tandem/models /opt/tandem/models" in model_server["runtime"]
    assert "COPY --from=model-tokenizers " in backend["runtime"]
    assert '"$model/manifest.json" "$model/tokenizer.json"' in backend["model-tokenizers"]
    for text in (dockerfile("model-server"), dockerfile("backend")):
        assert "://" not in text  # no index or registry hosts in the build


def test_images_health_checks_and_entrypoints() -> None:
    assert '"model-server", "/api/health"]' in dockerfile("model-server")
    assert '"api", "/api/health"]' in dockerfile("backend")
    assert 'ENTRYPOINT ["model-cache-entrypoint", "/opt/tandem/models"]' in dockerfile(
        "model-server"
    )
    assert dockerfile_env("backend")["TANDEM_MODEL_CACHE"] == "/opt/tandem/models"
    for image in ("model-server", "backend"):
        env = dockerfile_env(image)
        assert env["TANDEM_BIND_HOST"] == "0.0.0.0"
        assert "/opt/tandem/healthcheck.py" in dockerfile(image)
    model_env = dockerfile_env("model-server")
    assert model_env["MODEL_SERVER_PORT"] == model_env["INDEXING_MODEL_SERVER_PORT"] == "9000"


def test_build_context_holds_what_the_dockerfiles_copy() -> None:
    allowed = [
        line[1:].rstrip("/")
        for line in (ds.REPO / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    ]
    for name in ("model-server", "backend"):
        for source in re.findall(
            r"^COPY (?:--chmod=\S+ )?(?!--from)(\S+(?: \S+)*) \S+$", dockerfile(name), flags=re.M
        ):
            for path in source.split():
                assert (ds.REPO / path).exists(), path
                assert any(path == a or path.startswith(f"{a}/") for a in allowed), path
    compose_builds = {
        s["build"]["dockerfile"] for s in compose()["services"].values() if "build" in s
    }
    assert compose_builds == {
        "deploy/docker/model-server.Dockerfile",
        "deploy/docker/backend.Dockerfile",
    }
    assert all(
        Path(s["build"]["context"]) == ds.REPO
        for s in compose()["services"].values()
        if "build" in s
    )
