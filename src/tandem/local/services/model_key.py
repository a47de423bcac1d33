"""The local stack's model server key: made once by `tandem up`, kept in the data dir.

`tandem up` gives it to both model servers and to their clients (the API server and the
worker) as TANDEM_MODEL_SERVER_API_KEY, so even on one machine no other local user's
process can use the model servers. Commands that talk to the local stack's model servers
(`tandem reindex`) read it from the same file.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
from pathlib import Path

from tandem.local.services.process import ServiceError

log = logging.getLogger(__name__)

KEY_FILE = "model-server.key"
KEY_BYTES = 32  # 256 bits, 43 URL-safe characters


def key_path(data_dir: Path) -> Path:
    return data_dir / KEY_FILE


def read_key(data_dir: Path) -> str | None:
    """The stored key, or None when `tandem up` has not made one here."""
    try:
        text = key_path(data_dir).read_text().strip()
    except FileNotFoundError:
        return None
    return text or None


def ensure_key(data_dir: Path) -> str:
    """The stored key; a new random one (file mode 0600, created exclusively) if none."""
    path = key_path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(KEY_BYTES)
    try:
        # O_EXCL: two `tandem up` starting at once keep one key (the loser reads it).
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _existing(path)
    with os.fdopen(descriptor, "w") as file:
        file.write(key + "\n")
    log.info("model_server_key_created path=%s", path)
    return key


def _existing(path: Path) -> str:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        # Someone loosened it: readable by others is not a secret; take it back.
        log.warning("model_server_key_mode path=%s mode=%o fixed=600", path, mode)
        path.chmod(0o600)
    text = path.read_text().strip()
    if not text:
        raise ServiceError(f"{path} is empty: delete it and `tandem up` makes a new key")
    return text
