"""The setting types every process's settings share (tandem.config): ports, hosts, the
model cache, model-server endpoints and keys, each bound to its environment name."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import AliasChoices, BeforeValidator, Field, StringConstraints

DEFAULT_EMBEDDING_MODEL = "all-MiniLM-L6-v2"
INFERENCE_PORT = 9000
INDEXING_PORT = 9001


def default_model_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tandem" / "models"


def env(name: str, **constraints: Any) -> Any:
    """A settings field read from the environment variable `name`; `constraints` are
    `Field`'s (ge, pattern, ...)."""
    return Field(validation_alias=AliasChoices(name), **constraints)


Port = Annotated[int, Field(ge=1, le=65535)]
# Variables more than one process reads, declared once. The address every server binds
# (model servers, API, web) is one variable for all of them.
BindHost = Annotated[str, env("TANDEM_BIND_HOST")]
InferencePort = Annotated[Port, env("MODEL_SERVER_PORT")]
IndexingPort = Annotated[Port, env("INDEXING_MODEL_SERVER_PORT")]
ModelCache = Annotated[Path, env("TANDEM_MODEL_CACHE")]
EmbeddingModel = Annotated[str, env("TANDEM_EMBEDDING_MODEL", min_length=1)]
# The Host names (any port) the API and web servers answer; any other Host gets 400, so a
# DNS-rebinding page (a hostile name resolved to this machine) cannot read through them.
# Comma-separated; `*` allows any name, `.example.org` that domain and its subdomains.
AllowedHosts = Annotated[
    str, env("TANDEM_ALLOWED_HOSTS", min_length=1, pattern=r"^[A-Za-z0-9_.:*\[\], -]+$")
]
LOOPBACK_HOSTS = "127.0.0.1,localhost,[::1]"


def blank_is_unset(value: object) -> object:
    # Compose passes `VAR:` through empty when .env leaves it unset.
    return None if isinstance(value, str) and not value.strip() else value


# The model servers' optional bearer key (as TEI's --api-key), and what their clients
# send: one variable on both sides. Visible ASCII only, as an HTTP header carries it.
ModelServerApiKey = Annotated[
    Annotated[str, StringConstraints(pattern=r"^[\x21-\x7e]+$")] | None,
    BeforeValidator(blank_is_unset),
    env("TANDEM_MODEL_SERVER_API_KEY"),
]


# Several model servers of one role: comma-separated entries, each `http(s)://host:port`
# (one server) or `dns+http(s)://name:port` (every A/AAAA address of the name, re-resolved
# every 30 s: Compose `--scale`, a headless Service). Unset: the HOST/PORT pair's server.
_ENDPOINT = r"(dns\+)?https?://([A-Za-z0-9_.-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?/?"
ModelServerUrls = Annotated[
    Annotated[str, StringConstraints(pattern=rf"^\s*{_ENDPOINT}\s*(,\s*{_ENDPOINT}\s*)*,?\s*$")]
    | None,
    BeforeValidator(blank_is_unset),
]


def endpoint_entries(urls: str | None, host: str, port: int) -> list[str]:
    """The model client's entries: the URL list when set, else the one host:port."""
    if urls:
        return [part.strip().rstrip("/") for part in urls.split(",") if part.strip()]
    return [f"http://{host}:{port}"]
