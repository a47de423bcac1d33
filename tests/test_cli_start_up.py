"""`tandem` starts without the heavy libraries: each command imports what it uses when it
runs, so `--help` and the light commands do not pay for SQLAlchemy, numpy and the rest."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("sqlalchemy", "numpy", "onnxruntime", "fastapi", "celery")

# In a fresh interpreter: run the code, then print which of HEAVY it loaded.
LOADED = """
import json, sys
{code}
print(json.dumps([name for name in {heavy!r} if name in sys.modules]))
"""

HELP = """
from tandem.cli import app
try:
    app({argv!r}, prog_name="tandem")
except SystemExit as exc:
    assert exc.code == 0, exc.code
"""


def heavy_modules_loaded_by(code: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", LOADED.format(code=code, heavy=HEAVY)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    loaded: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return loaded


def test_importing_the_cli_loads_no_heavy_library() -> None:
    assert heavy_modules_loaded_by("import tandem.cli") == []


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["search", "--help"], ["ingest", "--help"], ["api-key", "create", "--help"]],
)
def test_help_loads_no_heavy_library(argv: list[str]) -> None:
    assert heavy_modules_loaded_by(HELP.format(argv=argv)) == []


def test_the_check_sees_a_heavy_import() -> None:
    """What the tests above rely on: a module that does load SQLAlchemy is caught."""
    assert "sqlalchemy" in heavy_modules_loaded_by("import tandem.db.principals")
