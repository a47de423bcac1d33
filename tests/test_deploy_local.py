"""The Compose topology run natively on loopback, with real nginx in front.

Every Tandem service of deploy/docker-compose.yml runs as a local process, each on its
own port, with the environment `docker compose config` resolves from .env.example; only
network addresses are translated (a Compose host name becomes 127.0.0.1 and its
container port that service's loopback port), plus what the images themselves provide
(the model cache, the entrypoint, the health-check script). PostgreSQL and Redis are the
session's real servers (tests/conftest.py) standing in for `relational_db` and `cache`.
nginx runs deploy/nginx/tandem.conf with its upstreams pointed at the loopback ports.
Services start in depends_on order, each once the health check Compose would run passes;
then a document is uploaded and found through nginx, with an API key as a deployment
requires.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests import deploy_support as ds
from tests.e2e_support import reset_database
from tests.support import ServerProcess, free_port, spawn

pytestmark = pytest.mark.slow

STARTUP_TIMEOUT = 180.0
LOOPBACK = "127.0.0.1"
# Stand-ins for the Compose services that tests/conftest.py runs as session servers.
BACKING_SERVICES = ("relational_db", "cache")
# What each image provides: the model server image's entrypoint seeds its model cache
# volume from the image's prepared models; the backend image carries only each model's
# manifest and tokenizer (what workers read), and reads them in place.
MODEL_SERVER_IMAGE = "tandem/model-server:0.1.0"
BACKEND_IMAGE = "tandem/backend:0.1.0"
IMAGE_HEALTHCHECK = "/opt/tandem/healthcheck.py"

# Eight documents on eight subjects: a ranker that guessed would put the right one first
# for one query in eight, so six queries over three modes leave it no chance to pass.
CORPUS = {
    "lighthouses.md": (
        b"# Lighthouses\n\nA lighthouse keeper trimmed the wick of the lamp every evening; "
        b"the Fresnel lens concentrated its light into a beam seen far out at sea."
    ),
    "beekeeping.txt": (
        b"Beekeepers smoke the hive before opening it. Worker bees store nectar in the comb "
        b"and fan it with their wings until it thickens into honey."
    ),
    "bread.txt": (
        b"Sourdough rises slowly: wild yeast and lactic bacteria ferment the dough overnight "
        b"before it is shaped, scored and baked in a very hot oven."
    ),
    "glaciers.md": (
        b"# Glaciers\n\nCompacted snow turns to ice that creeps downhill under its own "
        b"weight, carving valleys and leaving moraines of rock where it melts."
    ),
    "chess.txt": (
        b"In the opening, players develop knights and bishops, castle the king to safety and "
        b"fight for the centre squares before launching an attack."
    ),
    "volcanoes.txt": (
        b"Magma rising through the crust erupts as lava and ash; a stratovolcano is built "
        b"from layers of hardened lava, tephra and pumice."
    ),
    "tides.md": (
        b"# Tides\n\nThe moon's gravity pulls the oceans into two bulges, so most coasts see "
        b"two high waters and two low waters each lunar day."
    ),
    "violins.txt": (
        b"A luthier carves the spruce top and maple back of a violin, fits the sound post "
        b"and varnishes the body before stringing it."
    ),
}
SEARCHES = (
    ("Fresnel lens", "keyword", "lighthouses.md"),
    ("sourdough yeast", "keyword", "bread.txt"),
    ("how is honey made", "semantic", "beekeeping.txt"),
    ("why does the sea rise and fall twice a day", "semantic", "tides.md"),
    ("a lamp that guides ships at night", "hybrid", "lighthouses.md"),
    ("rivers of ice shaping mountains", "hybrid", "glaciers.md"),
)


@dataclass
class Service:
    name: str
    config: dict[str, Any]
    port: int
    env: dict[str, str] = field(default_factory=dict)
    argv: list[str] = field(default_factory=list)
    process: ServerProcess | None = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def log(self) -> str:
        return self.process.log() if self.process else ""


def container_port(config: dict[str, Any]) -> int:
    if config.get("expose"):
        return int(config["expose"][0])
    return int(config["ports"][0]["target"])


class LoopbackTopology:
    def __init__(
        self,
        compose: dict[str, Any],
        workdir: Path,
        *,
        postgres_url: str,
        redis_url: str,
        image_models: Path,
    ) -> None:
        self.workdir = workdir
        self.postgres_url = postgres_url
        self.redis_url = redis_url
        self.image_models = image_models
        self.services = {
            name: Service(name, config, free_port())
            for name, config in compose["services"].items()
            if name not in BACKING_SERVICES
        }
        # Compose DNS: service names and network aliases.
        self.hosts: dict[str, Service] = {}
        for service in self.services.values():
            aliases = (service.config.get("networks") or {}).get("default") or {}
            for host in [service.name, *(aliases.get("aliases") or [])]:
                self.hosts[host] = service
        self.api_key = ""
        self.backend_models = self._backend_image_models()

    # -- what each process is given ----------------------------------------------------

    def _backend_image_models(self) -> Path:
        """The backend image's /opt/tandem/models: manifest and tokenizer, no weights."""
        target = self.workdir / "backend-image-models"
        for model in self.image_models.iterdir():
            if model.is_dir() and not model.name.startswith("."):
                (target / model.name).mkdir(parents=True)
                for name in ("manifest.json", "tokenizer.json"):
                    shutil.copyfile(model / name, target / model.name / name)
        return target

    def volume(self, service: Service) -> Path:
        [mount] = service.config["volumes"]
        assert mount["type"] == "volume"
        path = self.workdir / "volumes" / str(mount["source"])
        path.mkdir(parents=True, exist_ok=True)
        return path

    def native_env(self, service: Service) -> dict[str, str]:
        given = {k: v for k, v in (service.config.get("environment") or {}).items() if v}
        env = dict(given)
        remote_ports: set[str] = set()
        for key, value in given.items():
            if key == "TANDEM_BIND_HOST":
                assert value == "0.0.0.0"
                env[key] = LOOPBACK
            elif key.endswith("_HOST") and value in self.hosts:
                target = self.hosts[value]
                port_key = key.removesuffix("_HOST") + "_PORT"
                assert given[port_key] == str(container_port(target.config)), port_key
                env[key], env[port_key] = LOOPBACK, str(target.port)
                remote_ports.add(port_key)
            elif key.endswith("_URLS") and value.startswith("dns+"):
                # Every replica of a service: here its one process, still found by "DNS".
                parts = urlsplit(value.removeprefix("dns+"))
                target = self.hosts[str(parts.hostname)]
                assert parts.port == container_port(target.config), key
                env[key] = f"dns+http://{LOOPBACK}:{target.port}"
            elif key == "DATABASE_URL":
                assert urlsplit(value).hostname == "relational_db"
                env[key] = self.postgres_url
            elif key == "REDIS_URL":
                assert urlsplit(value).hostname == "cache"
                env[key] = self.redis_url
            elif key == "TANDEM_WORKER_HEARTBEAT_FILE":
                # The container's own /tmp (a tmpfs), here a directory of this test's.
                assert value.startswith("/tmp/"), value
                env[key] = str(self.workdir / "tmp" / value.removeprefix("/tmp/"))
        for key, value in given.items():  # a port without a host is the service's own
            if key.endswith("_PORT") and key not in remote_ports:
                assert value == str(container_port(service.config)), (service.name, key)
                env[key] = str(service.port)
        # Set by the images (ENV TANDEM_MODEL_CACHE).
        if service.config["image"] == MODEL_SERVER_IMAGE:
            env["TANDEM_MODEL_CACHE"] = str(self.volume(service))
        elif service.config["image"] == BACKEND_IMAGE:
            env["TANDEM_MODEL_CACHE"] = str(self.backend_models)
        # Nothing from the test's own environment but what any process needs (PYTHONPATH:
        # the code under test, when it is not the installed package, e.g. a worktree).
        passed = ("PATH", "HOME", "LANG", "TMPDIR", "PYTHONPATH")
        base = {k: v for k, v in os.environ.items() if k in passed}
        return base | env

    def native_argv(self, service: Service) -> list[str]:
        command = list(service.config["command"])
        assert command[0] == "tandem"
        argv = [sys.executable, "-m", "tandem.cli", *command[1:]]
        if service.config["image"] == MODEL_SERVER_IMAGE:
            # The image's ENTRYPOINT, with this machine's prepared models as the image's.
            entrypoint = [str(ds.MODEL_CACHE_ENTRYPOINT), str(self.image_models)]
            return ["sh", *entrypoint, *argv]
        return argv

    # -- running ---------------------------------------------------------------------------

    def start(self, service: Service) -> ServerProcess:
        log_path = self.workdir / f"{service.name}.log"
        if service.name == "nginx":
            prefix = self.workdir / "nginx"
            wrapper = ds.write_nginx_prefix(prefix, self.nginx_conf(service))
            argv = ds.nginx_argv(prefix, wrapper)
            env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME")}
        else:
            service.env = self.native_env(service)
            argv = self.native_argv(service)
            env = service.env
        process = spawn(argv, env, log_path)
        service.process = ServerProcess(process, service.url, log_path)
        return service.process

    def nginx_conf(self, service: Service) -> str:
        conf = ds.NGINX_CONF.read_text()
        upstreams = {}
        for name, address in ds.nginx_upstreams(conf).items():
            host, _, port = address.partition(":")
            target = self.hosts[host]
            assert int(port) == container_port(target.config), address
            upstreams[name] = f"{LOOPBACK}:{target.port}"
        [listen] = ds.nginx_listen(conf)
        assert int(listen) == container_port(service.config)
        return ds.render_nginx(conf, upstreams, listen=f"{LOOPBACK}:{service.port}")

    def healthy(self, service: Service) -> bool:
        check = service.config.get("healthcheck") or {}
        test = list(check["test"])
        if test[0] == "CMD-SHELL":  # the worker's heartbeat; `$$` is Compose's `$`
            shell = subprocess.run(["sh", "-c", test[1].replace("$$", "$")], env=service.env)
            # Healthy, and consuming: a Celery worker says so when it takes tasks.
            return shell.returncode == 0 and "ready." in service.log()
        if test[:3] == ["CMD", "python", IMAGE_HEALTHCHECK]:
            argv = [sys.executable, str(ds.HEALTHCHECK_SCRIPT), *test[3:]]
            return subprocess.run(argv, env=service.env, capture_output=True).returncode == 0
        assert test[:2] == ["CMD", "wget"] and service.name == "nginx", test
        path = urlsplit(test[-1]).path
        try:
            return httpx.get(f"{service.url}{path}", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def wait_healthy(self, service: Service) -> None:
        assert service.process is not None
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not self.healthy(service):
            if service.process.process.poll() is not None:
                raise AssertionError(f"{service.name} exited:\n{service.log()[-4000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{service.name} not healthy:\n{service.log()[-4000:]}")
            time.sleep(0.25)

    def start_all(self, stack: ExitStack) -> None:
        """In depends_on order: every service whose dependencies are healthy starts, then
        each is waited for (the two model servers load their models side by side)."""
        healthy = set(BACKING_SERVICES)
        pending = list(self.services)
        while pending:
            startable = [
                name
                for name in pending
                if set(self.services[name].config.get("depends_on") or {}) <= healthy
            ]
            assert startable, f"depends_on cycle among {pending}"
            for name in startable:
                stack.callback(self.start(self.services[name]).stop)
            for name in startable:
                self.wait_healthy(self.services[name])
                healthy.add(name)
            pending = [name for name in pending if name not in healthy]

    def create_api_key(self) -> str:
        """What an operator runs: `docker compose exec api_server tandem api-key create`."""
        run = subprocess.run(
            [sys.executable, "-m", "tandem.cli", "api-key", "create", "--name", "deploy-test"],
            env=self.services["api_server"].env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert run.returncode == 0, run.stderr
        return run.stdout.strip()


@pytest.fixture(scope="module")
def topology(
    postgres_url: str, redis_url: str, model_cache: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LoopbackTopology]:
    ds.nginx_binary()  # fail early, naming the fix, when nginx is missing
    reset_database(postgres_url, redis_url)
    running = LoopbackTopology(
        ds.compose_config(),
        tmp_path_factory.mktemp("deploy-local"),
        postgres_url=postgres_url,
        redis_url=redis_url,
        image_models=model_cache,
    )
    with ExitStack() as stack:  # stops every started process, in reverse start order
        running.start_all(stack)
        running.api_key = running.create_api_key()
        yield running
    for service in running.services.values():
        assert service.process is not None
        code = service.process.process.returncode
        # Clean stops: 0, or the SIGTERM uvicorn re-raises after shutting down.
        assert code in (0, -signal.SIGTERM), (service.name, code, service.log()[-2000:])


def nginx(topology: LoopbackTopology) -> str:
    return topology.services["nginx"].url


def auth(topology: LoopbackTopology) -> dict[str, str]:
    return {"Authorization": f"Bearer {topology.api_key}"}


def test_upload_through_nginx_and_find_it_through_nginx(topology: LoopbackTopology) -> None:
    base, headers = nginx(topology), auth(topology)
    response = httpx.post(
        f"{base}/api/documents",
        files=[("files", (name, data)) for name, data in CORPUS.items()],
        headers=headers,
        timeout=60,
    )
    assert response.status_code == 202, response.text
    attempt_id = response.json()["attempt_id"]
    deadline = time.monotonic() + 120
    while True:
        attempt = httpx.get(f"{base}/api/index-attempts/{attempt_id}", headers=headers).json()
        if attempt["status"] in ("succeeded", "failed") or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    worker_log = topology.services["background"].log()[-3000:]
    assert attempt["status"] == "succeeded", (attempt, worker_log)
    for query, mode, expected in SEARCHES:
        found = httpx.post(
            f"{base}/api/search",
            json={"query": query, "mode": mode, "limit": 3},
            headers=headers,
            timeout=30,
        )
        assert found.status_code == 200, found.text
        body = found.json()
        assert body["degraded"] is False  # the API reached the inference server
        assert body["results"][0]["document_id"] == expected, body


def test_nginx_passes_the_api_key_requirement_through(topology: LoopbackTopology) -> None:
    response = httpx.post(f"{nginx(topology)}/api/search", json={"query": "honey"})
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "unauthorized"
    assert response.headers["www-authenticate"] == "Bearer"


def test_nginx_sends_everything_else_to_the_web_server(topology: LoopbackTopology) -> None:
    page = httpx.get(f"{nginx(topology)}/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert httpx.get(f"{nginx(topology)}/healthz").status_code == 200
    assert httpx.get(f"{nginx(topology)}/nginx-health").text == "ok\n"


def test_nginx_refuses_bodies_over_the_api_limit_in_the_api_error_shape(
    topology: LoopbackTopology,
) -> None:
    limit = int(topology.services["api_server"].env["TANDEM_MAX_UPLOAD_BYTES"])
    status, body = _declare_body(topology.services["nginx"].port, limit + 1)
    assert status == 413
    assert json.loads(body)["error"]["type"] == "payload_too_large"


def _declare_body(port: int, length: int) -> tuple[int, bytes]:
    """Send only the headers of an upload of `length` bytes; nginx answers at once."""
    request = (
        "POST /api/documents HTTP/1.1\r\nHost: localhost\r\n"
        "Content-Type: multipart/form-data; boundary=x\r\n"
        f"Content-Length: {length}\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection((LOOPBACK, port), timeout=10) as sock:
        sock.sendall(request.encode())
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        headers = dict(line.lower().split(": ", 1) for line in lines[1:])
        while len(body) < int(headers["content-length"]):
            body += sock.recv(65536)
    return int(lines[0].split()[1]), body


def test_model_servers_take_their_roles_from_the_compose_environment(
    topology: LoopbackTopology,
) -> None:
    inference = topology.services["inference_model_server"]
    indexing = topology.services["indexing_model_server"]
    assert httpx.get(f"{inference.url}/api/health").json()["role"] == "inference"
    assert httpx.get(f"{indexing.url}/api/health").json()["role"] == "indexing"
    body = {"query": "q", "texts": ["t"]}
    # The model servers need the key the API server and the workers are given.
    assert httpx.post(f"{indexing.url}/rerank", json=body).status_code == 401
    key = topology.services["background"].env["TANDEM_MODEL_SERVER_API_KEY"]
    assert key == indexing.env["TANDEM_MODEL_SERVER_API_KEY"]
    keyed = {"Authorization": f"Bearer {key}"}
    refused = httpx.post(f"{indexing.url}/rerank", json=body, headers=keyed)
    assert refused.status_code == 404
    assert refused.json()["error"]["type"] == "wrong_role"


def test_entrypoint_seeded_each_model_cache_volume(topology: LoopbackTopology) -> None:
    models = [p for p in topology.image_models.iterdir() if p.is_dir() and p.name[0] != "."]
    assert models
    for name in ("inference_model_server", "indexing_model_server"):
        volume = topology.volume(topology.services[name])
        for model in models:
            for file in model.iterdir():
                assert (volume / model.name / file.name).read_bytes() == file.read_bytes()
        assert not [p for p in volume.iterdir() if p.name.startswith(".")]  # no leftovers
