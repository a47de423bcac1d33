"""`tandem web` over plain HTTP: health, the static UI, and the /api/ proxy passing method,
path, query, headers, body and status through, or answering 502 when the API is down."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tandem.config import ModelServerSettings, StorageSettings
from tandem.local.stack import LocalPorts, local_stack_specs
from tandem.web.app import STATIC_DIR
from tests.e2e_support import (
    Backends,
    create_api_key,
    running,
    start_api,
    start_web,
)
from tests.support import ServerProcess, free_port

pytestmark = pytest.mark.slow

UPLOAD_LIMIT = 100_000
# A real key's shape (the dialog's "tdm_…" placeholder is not one).
API_KEY_SHAPE = re.compile(r"tdm_[A-Za-z0-9_-]{8,}")
REMOTE_ASSET = re.compile(r"""(src|href)=["']https?:|url\(["']?https?:|from\s+["']https?:""")


@pytest.fixture(scope="module")
def api(backends: Backends) -> Iterator[ServerProcess]:
    """Keys required, small upload limit; no inference server (search falls back to keywords)."""
    nowhere = f"http://127.0.0.1:{free_port()}"
    limits = {"TANDEM_MAX_UPLOAD_BYTES": str(UPLOAD_LIMIT)}
    with running(start_api(backends, nowhere, open_access=False, env=limits)) as server:
        yield server


@pytest.fixture(scope="module")
def auth(backends: Backends, api: ServerProcess) -> dict[str, str]:
    return {"Authorization": f"Bearer {create_api_key(backends)}"}


def test_health_and_the_static_ui(web: ServerProcess) -> None:
    health = httpx.get(f"{web.url}/healthz")
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "service": "web"}
    index = httpx.get(f"{web.url}/")
    assert index.status_code == 200
    assert index.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="js/main.js"></script>' in index.text
    assert "script-src 'self'" in index.headers["content-security-policy"]
    assert index.headers["cache-control"] == "no-cache"
    for asset in ("js/main.js", "js/views/upload.js", "css/app.css", "favicon.svg"):
        assert httpx.get(f"{web.url}/{asset}").status_code == 200, asset
    assert "javascript" in httpx.get(f"{web.url}/js/api.js").headers["content-type"]
    assert httpx.get(f"{web.url}/missing.html").status_code == 404


def test_static_files_hold_no_secrets_and_load_nothing_from_elsewhere() -> None:
    files = [p for p in STATIC_DIR.rglob("*") if p.is_file()]
    assert len(files) >= 10
    for path in files:
        text = path.read_text()
        assert not API_KEY_SHAPE.search(text), path
        assert not REMOTE_ASSET.search(text), path


def test_proxy_passes_status_body_and_headers(
    web: ServerProcess, api: ServerProcess, auth: dict[str, str]
) -> None:
    direct = httpx.get(f"{api.url}/api/documents")
    proxied = httpx.get(f"{web.url}/api/documents")
    assert proxied.status_code == direct.status_code == 401
    assert proxied.json() == direct.json()
    assert proxied.headers["www-authenticate"] == "Bearer"
    assert proxied.headers["content-type"] == "application/json"

    page = httpx.get(f"{web.url}/api/documents", params={"limit": 3, "offset": 1}, headers=auth)
    assert page.status_code == 200
    assert (page.json()["limit"], page.json()["offset"]) == (3, 1)
    assert int(page.headers["content-length"]) == len(page.content)

    # Percent-encoding survives the hop: "/" and "?" inside a document id.
    encoded = "/api/documents/folder%2Fwhat%3Fnot.txt"
    missing = httpx.get(f"{web.url}{encoded}", headers=auth)
    assert missing.status_code == 404
    assert missing.json() == httpx.get(f"{api.url}{encoded}", headers=auth).json()
    assert "folder/what?not.txt" in missing.json()["error"]["message"]

    found = httpx.post(f"{web.url}/api/search", json={"query": "wren"}, headers=auth)
    assert found.status_code == 200
    assert found.json()["degraded"] is True  # this API has no inference server
    blank = httpx.post(f"{web.url}/api/search", json={"query": ""}, headers=auth)
    assert blank.status_code == 422
    assert blank.json()["error"]["type"] == "validation_error"
    assert httpx.delete(f"{web.url}/api/documents/nothing.txt", headers=auth).status_code == 404


def test_uploads_pass_through_streamed_and_oversized_ones_get_413(
    web: ServerProcess, auth: dict[str, str]
) -> None:
    accepted = httpx.post(
        f"{web.url}/api/documents",
        files=[("files", ("wren.txt", b"The wren sings loudly from the hedge."))],
        headers=auth,
    )
    assert accepted.status_code == 202, accepted.text
    attempt = httpx.get(
        f"{web.url}/api/index-attempts/{accepted.json()['attempt_id']}", headers=auth
    )
    assert attempt.status_code == 200
    assert attempt.json()["items"][0]["filename"] == "wren.txt"

    # A chunked body (no Content-Length) is passed on as it arrives.
    boundary = "tandem-test-boundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; '
        'filename="finch.txt"\r\nContent-Type: text/plain\r\n\r\n'
    ).encode()
    parts = [head, b"Finches crack seeds. " * 500, f"\r\n--{boundary}--\r\n".encode()]
    streamed = httpx.post(
        f"{web.url}/api/documents",
        content=iter(parts),
        headers=auth | {"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert streamed.status_code == 202, streamed.text
    assert streamed.json()["documents"][0]["filename"] == "finch.txt"

    too_big = httpx.post(
        f"{web.url}/api/documents",
        files=[("files", ("big.txt", b"x" * (UPLOAD_LIMIT * 50)))],
        headers=auth,
    )
    assert too_big.status_code == 413
    assert too_big.json()["error"]["type"] == "payload_too_large"


def test_api_down_or_not_configured_is_a_502_json_error(backends: Backends) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with running(start_web(dead, backends.log_dir)) as orphan:
        response = httpx.get(f"{orphan.url}/api/stats")
        assert response.status_code == 502
        assert response.json()["error"]["type"] == "bad_gateway"
        assert dead in response.json()["error"]["message"]
        assert httpx.get(f"{orphan.url}/healthz").status_code == 200
    with running(start_web(None, backends.log_dir)) as behind_nginx:
        response = httpx.get(f"{behind_nginx.url}/api/stats")
        assert response.status_code == 502
        assert response.json()["error"]["type"] == "api_not_configured"
        assert "API_SERVER_URL" in response.json()["error"]["message"]


def test_up_starts_the_web_server_after_the_api_and_names_it_first(tmp_path: Path) -> None:
    storage = StorageSettings(
        database_url="postgresql+psycopg://x@127.0.0.1/x", redis_url="redis://x", data_dir=tmp_path
    )
    specs, banner = local_stack_specs(
        ModelServerSettings(), storage, LocalPorts(api=18080, web=13000)
    )
    names = [spec.name for spec in specs]
    assert names.index("web-server") == names.index("api-server") + 1
    web = specs[names.index("web-server")]
    assert web.env["API_SERVER_URL"] == "http://127.0.0.1:18080"
    assert web.ready_url == "http://127.0.0.1:13000/healthz"
    assert banner.splitlines()[0] == "Tandem is up: open http://127.0.0.1:13000"


def test_up_with_keys_required_runs_the_api_without_open_access(tmp_path: Path) -> None:
    storage = StorageSettings(
        database_url="postgresql+psycopg://x@127.0.0.1/x", redis_url="redis://x", data_dir=tmp_path
    )
    models, ports = ModelServerSettings(), LocalPorts(api=18080, web=13000)
    open_specs, open_banner = local_stack_specs(models, storage, ports)
    keyed_specs, keyed_banner = local_stack_specs(models, storage, ports, require_api_key=True)

    def api_argv(specs: list[Any]) -> list[str]:
        return next(s.argv for s in specs if s.name == "api-server")

    assert "--open-access" in api_argv(open_specs) and "Open access" in open_banner
    assert "--open-access" not in api_argv(keyed_specs)
    assert "tandem api-key create --user admin --scope admin" in keyed_banner
