"""The Dockerfiles: stages, what each image holds, health checks, the build context."""

from __future__ import annotations

import re
from pathlib import Path

from tests import deploy_support as ds
from tests.topology_support import (
    compose,
    dockerfile,
    dockerfile_env,
    stages,
)

# --- images ------------------------------------------------------------------------------------


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
