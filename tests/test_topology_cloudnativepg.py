"""The CloudNativePG overlay, as `kubectl kustomize` renders it: a 3-instance Cluster in
place of the StatefulSet, writes on `-rw`, the API's searches on `-ro`, anti-affinity and
disruption budgets, network policies that still admit only Tandem's clients; everything
else as the base renders it."""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from tests import deploy_support as ds
from tests.topology_support import env_sources, labels_match

CLUSTER = "postgresql"


@cache
def overlay() -> list[dict[str, Any]]:
    return ds.render_kustomization(ds.CNPG_OVERLAY)


@cache
def base() -> list[dict[str, Any]]:
    return ds.render_kustomization(ds.KUBERNETES)


def find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    [doc] = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def container_env(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    return env


def test_the_cluster_replaces_the_statefulset_and_its_service() -> None:
    kinds = {(d["kind"], d["metadata"]["name"]) for d in overlay()}
    assert ("StatefulSet", CLUSTER) not in kinds and ("Service", CLUSTER) not in kinds
    assert ("StatefulSet", CLUSTER) in {(d["kind"], d["metadata"]["name"]) for d in base()}
    # Everything else is the base's, unchanged but for the database wiring.
    changed = {("Deployment", "api-server"), ("Deployment", "background-worker")}
    changed |= {("NetworkPolicy", CLUSTER)}
    for doc in base():
        key = (doc["kind"], doc["metadata"]["name"])
        if doc["kind"] not in ("StatefulSet",) and key != ("Service", CLUSTER):
            assert (find(overlay(), *key) == doc) != (key in changed), key


def test_three_instances_of_the_base_image_with_pgvector_created() -> None:
    cluster = find(overlay(), "Cluster", CLUSTER)
    assert cluster["apiVersion"] == "postgresql.cnpg.io/v1"
    spec = cluster["spec"]
    assert spec["instances"] == 3
    [base_image] = [
        c["image"]
        for c in find(base(), "StatefulSet", CLUSTER)["spec"]["template"]["spec"]["containers"]
    ]
    assert spec["imageName"] == base_image  # the same pgvector build and PostgreSQL major
    assert re.search(r"-pg(\d+)$", spec["imageName"])
    initdb = spec["bootstrap"]["initdb"]
    assert (initdb["database"], initdb["owner"]) == ("tandem", "tandem")
    assert "CREATE EXTENSION IF NOT EXISTS vector" in initdb["postInitApplicationSQL"]
    # The image's postgres user, as the StatefulSet ran it.
    statefulset = find(base(), "StatefulSet", CLUSTER)["spec"]["template"]["spec"]
    assert spec["postgresUID"] == statefulset["securityContext"]["runAsUser"]


def test_instances_spread_over_nodes_and_keep_disruption_budgets() -> None:
    spec = find(overlay(), "Cluster", CLUSTER)["spec"]
    affinity = spec["affinity"]
    assert affinity["enablePodAntiAffinity"] is True
    assert affinity["topologyKey"] == "kubernetes.io/hostname"
    assert affinity["podAntiAffinityType"] == "required"
    assert spec.get("enablePDB", True) is True  # the operator makes the PDBs
    assert spec["storage"]["size"] == "20Gi"


def test_writes_go_to_rw_and_the_api_searches_on_ro() -> None:
    api = find(overlay(), "Deployment", "api-server")
    worker = find(overlay(), "Deployment", "background-worker")
    generated = ("secret", f"{CLUSTER}-app")
    for deployment in (api, worker):
        sources = env_sources(deployment)
        assert sources["DATABASE_URL"][0] == "secret"
        [url] = [e for e in container_env(deployment) if e["name"] == "DATABASE_URL"]
        ref = url["valueFrom"]["secretKeyRef"]
        assert (ref["name"], ref["key"]) == (generated[1], "uri")  # the operator's, to -rw
    env = container_env(api)
    names = [e["name"] for e in env]
    [read] = [e for e in env if e["name"] == "DATABASE_READ_URLS"]
    assert re.fullmatch(
        rf"postgresql://tandem:\$\(TANDEM_DATABASE_PASSWORD\)@{CLUSTER}-ro:5432/tandem",
        read["value"],
    )
    # $(VAR) expands only variables defined earlier in the list.
    assert names.index("TANDEM_DATABASE_PASSWORD") < names.index("DATABASE_READ_URLS")
    assert "DATABASE_READ_URLS" not in {e["name"] for e in container_env(worker)}


def test_database_pods_admit_tandems_clients_replicas_and_the_operator_only() -> None:
    cluster = find(overlay(), "Cluster", CLUSTER)
    pod_labels = cluster["spec"]["inheritedMetadata"]["labels"] | {"cnpg.io/cluster": CLUSTER}
    policy = find(overlay(), "NetworkPolicy", CLUSTER)["spec"]
    assert labels_match(policy["podSelector"]["matchLabels"], pod_labels)
    [clients, operator] = policy["ingress"]
    allowed = [peer["podSelector"]["matchLabels"] for peer in clients["from"]]
    assert allowed == [
        {"app": "api-server"},
        {"app": "background-worker"},
        {"cnpg.io/cluster": CLUSTER},
    ]
    assert [p["port"] for p in clients["ports"]] == [5432]
    assert [p["port"] for p in operator["ports"]] == [8000]
    # The base's API and worker policies reach the Cluster's pods by the inherited label.
    for name in ("api-server", "background-worker"):
        egress = find(overlay(), "NetworkPolicy", name)["spec"]["egress"]
        selectors = [
            peer.get("podSelector", {}).get("matchLabels")
            for rule in egress
            for peer in rule.get("to", [])
        ]
        assert any(s and labels_match(s, pod_labels) for s in selectors), name
