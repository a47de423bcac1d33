"""Container health check: exit 0 when the local server answers 2xx, 1 otherwise.

    python healthcheck.py SERVER PATH

SERVER picks the port from the same environment the server reads: `model-server`
(INDEXING_MODEL_SERVER_PORT when INDEXING_ONLY is true, else MODEL_SERVER_PORT), `api`
(API_SERVER_PORT) or `web` (WEB_SERVER_PORT). Standard library only: it runs in both images.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

TRUE = {"1", "true", "yes", "on", "y", "t"}


def port(server: str) -> str:
    if server == "model-server":
        if os.environ.get("INDEXING_ONLY", "").strip().lower() in TRUE:
            return os.environ.get("INDEXING_MODEL_SERVER_PORT", "9001")
        return os.environ.get("MODEL_SERVER_PORT", "9000")
    if server == "api":
        return os.environ.get("API_SERVER_PORT", "8080")
    if server == "web":
        return os.environ.get("WEB_SERVER_PORT", "3000")
    raise SystemExit(f"unknown server {server!r}: model-server, api or web")


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    url = f"http://127.0.0.1:{port(argv[1])}{argv[2]}"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return 0 if 200 <= response.status < 300 else 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"{url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
