"""Fuzzing a live server with schemathesis, from the OpenAPI document it serves.

schemathesis runs as its own command (its pytest plugin predates this pytest), against a
server started for real on loopback, with a fixed seed and a bounded number of examples;
its JSON report is what the tests assert on.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

# What every response must satisfy. `positive_data_acceptance` is left out on purpose:
# some limits cannot be said in a JSON schema (unique document ids in a batch, dimensions
# up to the served model's, a model context in tokens) and are refused with a documented
# 4xx. `negative_data_rejection` stays: a request the schema forbids must get a 4xx.
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
    # Operations the document says need a key refuse requests without one (401).
    "ignored_auth",
)
# The stateful phase is left out: it expects a resource created by a 202 upload to be
# readable at once, while indexing is asynchronous by design.
PHASES = "examples,coverage,fuzzing"
EXAMPLES_PER_OPERATION = 20
SEED = 20261129
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def documented_operations(base_url: str) -> list[str]:
    """Every operation the server's OpenAPI document lists, as "METHOD /path"."""
    paths = httpx.get(f"{base_url}/openapi.json", timeout=30).json()["paths"]
    return sorted(
        f"{method.upper()} {path}"
        for path, item in paths.items()
        for method in item
        if method in HTTP_METHODS
    )


def fuzz(
    base_url: str,
    workdir: Path,
    headers: dict[str, str] | None = None,
    config: str = "",
    timeout: float = 600.0,
) -> dict[str, Any]:
    """Run schemathesis against ``base_url``; return its JSON report (with its output).

    ``config`` is the text of a `schemathesis.toml`, e.g. known identifiers for path
    parameters, so operations on existing resources are reached, not only their 404s.
    """
    report = workdir / "report.json"
    config_file = workdir / "schemathesis.toml"
    config_file.write_text(config)
    argv = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(config_file),
        "run",
        f"{base_url}/openapi.json",
        "--checks",
        ",".join(CHECKS),
        "--phases",
        PHASES,
        "--max-examples",
        str(EXAMPLES_PER_OPERATION),
        "--seed",
        str(SEED),
        "--workers",
        "1",
        "--generation-database",
        "none",
        "--request-timeout",
        "30",
        "--no-color",
        "--report",
        "json",
        "--report-json-path",
        str(report),
    ]
    for name, value in (headers or {}).items():
        argv += ["--header", f"{name}: {value}"]
    run = subprocess.run(argv, cwd=workdir, capture_output=True, text=True, timeout=timeout)
    (workdir / "schemathesis.txt").write_text(run.stdout + run.stderr)
    assert report.exists(), f"schemathesis wrote no report:\n{run.stdout}\n{run.stderr}"
    result: dict[str, Any] = json.loads(report.read_text())
    result["output"] = run.stdout
    result["documented"] = documented_operations(base_url)
    return result


def assert_no_failures(result: dict[str, Any]) -> None:
    """Every documented operation tested with examples to spare; not one check failed."""
    output = result["output"][-30000:]
    assert result["failures"] == [], output
    assert result["errors"] == [], output
    operations = len(result["documented"])
    assert operations > 0
    assert result["operations"]["tested"] == result["operations"]["total"] == operations, output
    # Each operation got real examples, not one request each.
    assert result["test_cases"]["generated"] >= 10 * operations, output
    assert result["exit_code"] == 0, output
