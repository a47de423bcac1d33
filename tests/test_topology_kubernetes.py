"""Kubernetes manifests: the seed's files and order, the two model servers, who may talk to whom."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests import deploy_support as ds
from tests.topology_support import (
    CPU_RANGE,
    INDEXING_CPU_REQUEST,
    MEMORY_RANGE,
    MODEL_CACHE_PATH,
    MODEL_SERVER_PORT,
    NAMESPACE,
    SEED_FILES,
    compose_service,
    configmap,
    container,
    container_port,
    cpu_millicores,
    dockerfile_env,
    env_sources,
    get,
    labels_match,
    memory_bytes,
    of_kind,
    pod_spec,
    resources,
    workloads,
)

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
        # A headless `-pods` Service names every pod of its workload (model servers).
        name = service["metadata"]["name"]
        headless = service["spec"].get("clusterIP") == "None"
        assert selected[0]["metadata"]["name"] == (name.removesuffix("-pods") if headless else name)
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
        # ...and the URL list at every pod of it, through its headless Service.
        pods = get("Service", f"{name}-pods")
        assert pods["spec"]["clusterIP"] == "None"
        assert pods["spec"]["selector"] == {"app": name}
        [port] = pods["spec"]["ports"]
        assert data[f"{prefix}MODEL_SERVER_URLS"] == f"dns+http://{name}-pods:{port['port']}"


def test_api_server_gets_the_inference_server_and_workers_the_indexing_server() -> None:
    api = env_sources(get("Deployment", "api-server"))
    worker = env_sources(get("Deployment", "background-worker"))
    for key in ("MODEL_SERVER_HOST", "MODEL_SERVER_PORT", "MODEL_SERVER_URLS"):
        assert api[key] == ("configmap", key)
        assert key not in worker
    for key in (
        "INDEXING_MODEL_SERVER_HOST",
        "INDEXING_MODEL_SERVER_PORT",
        "INDEXING_MODEL_SERVER_URLS",
    ):
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
