"""The nginx config: routes, the body limit, one config for Kubernetes and Compose."""

from __future__ import annotations

import re

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
