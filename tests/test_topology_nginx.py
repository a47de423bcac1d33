"""The nginx config: routes, the body limit, one config for Kubernetes and Compose."""

from __future__ import annotations

import re

import pytest

import tandem.config
from tests import deploy_support as ds
from tests.topology_support import (
    COMPOSE_TO_KUBERNETES,
    compose_env,
    compose_service,
    configmap,
    container,
    get,
)

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


def _location_body_limit(conf: str, location: str) -> int:
    """The client_max_body_size (in bytes) of `location`'s block, or of the server."""
    if location == "server":
        block = conf.split("\n    location ", 1)[0]
    else:
        [block] = re.findall(rf"location {re.escape(location)} \{{([^}}]*)\}}", conf)
    [megabytes] = re.findall(r"client_max_body_size (\d+)m;", block)
    return int(megabytes) * 1024 * 1024


# Each route's nginx location, the API setting that limits it, and its variable.
BODY_LIMITS = [
    ("= /api/documents", "max_upload_bytes", "TANDEM_MAX_UPLOAD_BYTES", "/api/documents"),
    (
        "= /api/documents/batch",
        "max_batch_request_bytes",
        "TANDEM_MAX_BATCH_REQUEST_BYTES",
        "/api/documents/batch",
    ),
    ("server", "max_json_bytes", "TANDEM_MAX_JSON_BYTES", "default"),
]


@pytest.mark.parametrize(("location", "field", "variable", "map_key"), BODY_LIMITS)
def test_nginx_body_limits_equal_the_api_limits_per_route(
    location: str, field: str, variable: str, map_key: str
) -> None:
    conf = ds.NGINX_CONF.read_text()
    nginx_bytes = _location_body_limit(conf, location)
    assert nginx_bytes == tandem.config.ApiSettings.model_fields[field].default
    assert ds.read_env_example()[variable] == str(nginx_bytes)
    assert configmap()[variable] == str(nginx_bytes)
    assert compose_env("api_server")[variable] == str(nginx_bytes)
    # nginx's own 413 names the same limit as the API's would.
    assert re.search(rf"^\s*{re.escape(map_key)} {nginx_bytes};$", conf, re.MULTILINE)
    assert "exceeds $tandem_body_limit bytes" in conf


def test_nginx_sends_service_names_as_host_and_the_browsers_as_forwarded_host() -> None:
    conf = ds.NGINX_CONF.read_text()
    assert "proxy_set_header Host $tandem_upstream_host;" in conf
    assert "proxy_set_header X-Forwarded-Host $http_host;" in conf
    hosts = configmap()["TANDEM_ALLOWED_HOSTS"].split(",")
    for upstream in ds.nginx_upstreams(conf).values():
        service = upstream.split(":")[0]
        assert re.search(rf"^\s*(~\^/api/|default) {service};$", conf, re.MULTILINE)
        assert service in hosts
        assert service in compose_env("api_server")["TANDEM_ALLOWED_HOSTS"].split(",")


def test_kubernetes_and_compose_use_the_same_nginx_config() -> None:
    embedded, checksum = ds.embedded_nginx()
    assert embedded == ds.NGINX_CONF.read_text()
    assert checksum == ds.nginx_checksum(embedded)
    volumes = compose_service("nginx")["volumes"]
    assert [(v["source"], v["target"]) for v in volumes] == [
        (str(ds.NGINX_CONF), "/etc/nginx/conf.d/default.conf")
    ]
    assert container(get("Deployment", "nginx"))["image"] == compose_service("nginx")["image"]
