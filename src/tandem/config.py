"""Settings, read from the environment when a process starts (never at import).

Environment names follow the seed's configmap: ``MODEL_SERVER_HOST/PORT`` is where the
inference model server is reached, ``INDEXING_MODEL_SERVER_HOST/PORT`` the indexing one,
and ``INDEXING_ONLY=true`` turns a model server into the indexing role.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated

from pydantic import (
    BeforeValidator,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from tandem.config_fields import (
    DEFAULT_EMBEDDING_MODEL,
    INDEXING_PORT,
    INFERENCE_PORT,
    LOOPBACK_HOSTS,
    AllowedHosts,
    BindHost,
    EmbeddingModel,
    IndexingPort,
    InferencePort,
    ModelCache,
    ModelServerApiKey,
    ModelServerUrls,
    Port,
    blank_is_unset,
    default_model_cache,
    endpoint_entries,
    env,
)
from tandem.cpu import CpuPriority
from tandem.precision import Precision


class Role(StrEnum):
    INFERENCE = "inference"
    INDEXING = "indexing"


class ModelCacheSettings(BaseSettings):
    """Where prepared models live; shared by the server and `tandem models prepare`."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    model_cache: ModelCache = Field(default_factory=default_model_cache)
    embedding_model: EmbeddingModel = DEFAULT_EMBEDDING_MODEL
    # A cross-encoder prepared with `tandem models prepare-reranker`; none is packaged.
    rerank_model: Annotated[str | None, env("TANDEM_RERANK_MODEL")] = None


class ModelServerSettings(ModelCacheSettings):
    """One model server process. The role decides the scheduling defaults."""

    indexing_only: Annotated[bool, env("INDEXING_ONLY")] = False
    bind_host: BindHost = "127.0.0.1"
    inference_port: InferencePort = INFERENCE_PORT
    indexing_port: IndexingPort = INDEXING_PORT
    # CPUs this process may use, e.g. "0" or "2-3"; empty = whatever the OS gives us.
    cpus: Annotated[str, env("TANDEM_CPUS")] = ""
    # normal | nice | idle (see cpu.py). Where both roles share a host (`tandem up`,
    # Compose) the indexing server is started with idle; alone on a node it changes nothing.
    cpu_priority: Annotated[CpuPriority, env("TANDEM_CPU_PRIORITY")] = CpuPriority.NORMAL
    # Which prepared weights the embedding model runs. Both roles must use the same one:
    # queries and passages are compared in one vector space. int8 is the default because
    # it keeps retrieval MRR@10 within 0.005 of fp32 (benchmarks/precision_quality.py).
    precision: Annotated[Precision, env("TANDEM_PRECISION")] = Precision.INT8

    # Admission limits: a request over these is refused before any work is done.
    max_request_bytes: Annotated[PositiveInt, env("TANDEM_MAX_REQUEST_BYTES")] = 8 * 1024 * 1024
    max_items_per_request: Annotated[PositiveInt, env("TANDEM_MAX_ITEMS_PER_REQUEST")] = 2048
    max_context_length: Annotated[PositiveInt, env("TANDEM_MAX_CONTEXT_LENGTH")] = 512
    # Role-dependent when unset (see `scheduling`).
    max_queue_items: Annotated[PositiveInt | None, env("TANDEM_MAX_QUEUE_ITEMS")] = None
    max_batch_size: Annotated[PositiveInt | None, env("TANDEM_MAX_BATCH_SIZE")] = None
    max_batch_tokens: Annotated[PositiveInt | None, env("TANDEM_MAX_BATCH_TOKENS")] = None
    threads: Annotated[PositiveInt | None, env("TANDEM_THREADS")] = None
    drain_seconds: Annotated[NonNegativeFloat, env("TANDEM_DRAIN_SECONDS")] = 30.0
    # One embedding model is served, so any requested model name is answered with it (as
    # TEI and Infinity do); strict matching refuses other names with 404 model_not_found.
    strict_model_name: Annotated[bool, env("TANDEM_STRICT_MODEL_NAME")] = False
    # Set: every route but the probes, /metrics and the OpenAPI docs needs
    # `Authorization: Bearer <key>` (401 otherwise).
    api_key: ModelServerApiKey = None
    # Both roles on one host (`tandem up` sets it under its run dir): the inference role
    # announces its queries in this file and the indexing role pauses between short
    # sub-batches while they run (model_server/query_signal.py). Unset: no signal.
    query_signal_file: Annotated[
        Path | None, BeforeValidator(blank_is_unset), env("TANDEM_QUERY_SIGNAL_FILE")
    ] = None

    @field_validator("query_signal_file")
    @classmethod
    def _signal_file_is_absolute(cls, value: Path | None) -> Path | None:
        # Both processes must name the same file whatever their working directories.
        if value is not None and not value.is_absolute():
            raise ValueError("TANDEM_QUERY_SIGNAL_FILE must be an absolute path")
        if value is not None and value.is_dir():
            raise ValueError("TANDEM_QUERY_SIGNAL_FILE names a directory, not a file")
        return value

    @model_validator(mode="after")
    def _batch_fits_context(self) -> ModelServerSettings:
        if self.max_batch_tokens is not None and self.max_batch_tokens < self.max_context_length:
            raise ValueError("TANDEM_MAX_BATCH_TOKENS must be at least TANDEM_MAX_CONTEXT_LENGTH")
        return self

    @property
    def role(self) -> Role:
        return Role.INDEXING if self.indexing_only else Role.INFERENCE

    @property
    def port(self) -> int:
        return self.indexing_port if self.indexing_only else self.inference_port

    def scheduling(self) -> SchedulingLimits:
        """This role's batching limits; a limit left unset takes the role's default
        (written `inference's if inference else indexing's`)."""
        inference = self.role is Role.INFERENCE
        return SchedulingLimits(
            max_queue_items=self.max_queue_items or (1024 if inference else 16384),
            max_batch_size=self.max_batch_size or (32 if inference else 64),
            max_batch_tokens=self.max_batch_tokens or (4096 if inference else 16384),
            sort_window=0 if inference else 512,
            shortest_first=inference,
        )


@dataclass(frozen=True, slots=True)
class SchedulingLimits:
    """How a role forms batches. Inference: small batches, shortest request first, never
    waits. Indexing: large token budget, length-sorted window to cut padding."""

    max_queue_items: int
    max_batch_size: int
    max_batch_tokens: int
    sort_window: int
    shortest_first: bool


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "tandem"


class StorageSettings(BaseSettings):
    """Where state lives. Unset URLs mean `tandem up` starts local servers in the data dir."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    database_url: Annotated[str | None, env("DATABASE_URL")] = None
    redis_url: Annotated[str | None, env("REDIS_URL")] = None
    data_dir: Annotated[Path, env("TANDEM_DATA_DIR")] = Field(default_factory=default_data_dir)
    # How long a task may stay unacknowledged before Redis hands it to another worker
    # (a worker killed mid-task loses nothing: the task runs again, idempotently).
    task_visibility_timeout: Annotated[PositiveInt, env("TANDEM_TASK_VISIBILITY_TIMEOUT")] = 300
    task_expiry_seconds: Annotated[PositiveInt, env("TANDEM_TASK_EXPIRY_SECONDS")] = 24 * 3600

    def require_database_url(self) -> str:
        if not self.database_url:
            raise ValueError("DATABASE_URL is not set (`tandem up` sets it for a local stack)")
        return self.database_url

    def require_redis_url(self) -> str:
        if not self.redis_url:
            raise ValueError("REDIS_URL is not set (`tandem up` sets it for a local stack)")
        return self.redis_url


def _url_list(value: object) -> object:
    # One variable, comma-separated (an env var holds no list); blanks are dropped.
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class ApiSettings(StorageSettings):
    """The API server: talks to the inference model server only."""

    # Hot standbys of DATABASE_URL's server: search, document listing and reads go to a
    # healthy one that has replayed every succeeded attempt (tandem.db.replicas); writes,
    # migrations and the work queue stay on the primary. Comma-separated.
    database_read_urls: Annotated[
        list[str], NoDecode, BeforeValidator(_url_list), env("DATABASE_READ_URLS")
    ] = Field(default_factory=list)
    # A replica further behind the primary than this is skipped until it catches up.
    database_read_max_lag_seconds: Annotated[
        PositiveFloat, env("DATABASE_READ_MAX_LAG_SECONDS")
    ] = 5.0
    # A read whose replica has not yet replayed the newest succeeded attempt waits this
    # long for it (checking every 2 ms) before it is read again elsewhere; 0: never waits.
    database_read_catch_up_seconds: Annotated[
        NonNegativeFloat, env("DATABASE_READ_CATCH_UP_SECONDS")
    ] = 0.1
    # How often each replica's health and lag are measured (in the background).
    database_read_check_seconds: Annotated[PositiveFloat, env("DATABASE_READ_CHECK_SECONDS")] = 1.0

    model_server_host: Annotated[str, env("MODEL_SERVER_HOST")] = "127.0.0.1"
    model_server_port: InferencePort = INFERENCE_PORT
    bind_host: BindHost = "127.0.0.1"
    port: Annotated[Port, env("API_SERVER_PORT")] = 8080
    # Explicit opt-out of API keys, for a local single-user stack only.
    open_access: Annotated[bool, env("TANDEM_OPEN_ACCESS")] = False
    allowed_hosts: AllowedHosts = LOOPBACK_HOSTS
    # A key that passed is not looked up again for this long: also how long a revoked key
    # may still be accepted by a server that saw it just before (hence at most 5 s).
    api_key_cache_seconds: Annotated[
        NonNegativeFloat, env("TANDEM_API_KEY_CACHE_SECONDS", le=5.0)
    ] = 5.0
    # Refused keys per client address and minute before further unknown keys get 429
    # without a database lookup (keys already accepted keep working).
    key_failures_per_minute: Annotated[PositiveInt, env("TANDEM_KEY_FAILURES_PER_MINUTE")] = 30
    # Request bodies, checked before they are read: a multipart upload (all its files)...
    max_upload_bytes: Annotated[PositiveInt, env("TANDEM_MAX_UPLOAD_BYTES")] = 100 * 1024 * 1024
    # ...a JSON batch ingest...
    max_batch_request_bytes: Annotated[PositiveInt, env("TANDEM_MAX_BATCH_REQUEST_BYTES")] = (
        16 * 1024 * 1024
    )
    # ...and every other request (search, deletes): 1 MiB holds a search with the largest
    # filter lists its schema allows.
    max_json_bytes: Annotated[PositiveInt, env("TANDEM_MAX_JSON_BYTES")] = 1024 * 1024
    max_file_bytes: Annotated[PositiveInt, env("TANDEM_MAX_FILE_BYTES")] = 25 * 1024 * 1024
    max_files_per_upload: Annotated[PositiveInt, env("TANDEM_MAX_FILES_PER_UPLOAD")] = 1000
    max_query_chars: Annotated[PositiveInt, env("TANDEM_MAX_QUERY_CHARS")] = 1000
    model_timeout_seconds: Annotated[PositiveFloat, env("TANDEM_QUERY_MODEL_TIMEOUT")] = 5.0
    fusion: Annotated[str, env("TANDEM_FUSION", pattern="^(linear|rrf)$")] = "linear"
    # Sent to the inference server when set (ModelClient reads it when not given one).
    model_server_api_key: ModelServerApiKey = None
    # More than one inference server (see ModelServerUrls); searches skip one that is down.
    model_server_urls_setting: Annotated[ModelServerUrls, env("MODEL_SERVER_URLS")] = None

    @property
    def model_server_urls(self) -> list[str]:
        return endpoint_entries(
            self.model_server_urls_setting, self.model_server_host, self.model_server_port
        )

    @property
    def model_server_url(self) -> str:
        """The first server, which the status page probes (a DNS entry: its name)."""
        return self.model_server_urls[0].removeprefix("dns+")


class WorkerSettings(StorageSettings):
    """A background worker: talks to the indexing model server only."""

    indexing_model_server_host: Annotated[str, env("INDEXING_MODEL_SERVER_HOST")] = "127.0.0.1"
    indexing_model_server_port: IndexingPort = INDEXING_PORT
    model_cache: ModelCache = Field(default_factory=default_model_cache)
    embedding_model: EmbeddingModel = DEFAULT_EMBEDDING_MODEL
    concurrency: Annotated[PositiveInt, env("TANDEM_WORKER_CONCURRENCY")] = 4
    chunk_overlap_tokens: Annotated[NonNegativeInt, env("TANDEM_CHUNK_OVERLAP_TOKENS")] = 32
    embed_batch_size: Annotated[PositiveInt, env("TANDEM_EMBED_BATCH_SIZE")] = 64
    model_timeout_seconds: Annotated[PositiveFloat, env("TANDEM_INDEXING_MODEL_TIMEOUT")] = 120.0
    # One claim takes up to this many items (short documents share embedding requests) or
    # this many payload bytes (~64 passages of 256 tokens), whichever comes first.
    batch_items: Annotated[int, env("TANDEM_BATCH_ITEMS", gt=0, le=1000)] = 64
    batch_bytes: Annotated[PositiveInt, env("TANDEM_BATCH_BYTES")] = 96 * 1024
    # A claimed item is its worker's this long past the last heartbeat (every third of
    # it), then any worker may take it over: a killed worker's items resume within
    # lease + sweep interval. A batch still running after max_batch_seconds is presumed
    # stuck and its leases are left to run out.
    lease_seconds: Annotated[float, env("TANDEM_LEASE_SECONDS", ge=1.0)] = 30.0
    max_batch_seconds: Annotated[PositiveFloat, env("TANDEM_MAX_BATCH_SECONDS")] = 900.0
    sweep_seconds: Annotated[PositiveFloat, env("TANDEM_SWEEP_SECONDS")] = 5.0
    # Unexpected errors (or dead workers) an item may meet before it fails for good; the
    # first retry waits retry_base_seconds, doubling after each.
    max_item_failures: Annotated[PositiveInt, env("TANDEM_MAX_ITEM_FAILURES")] = 3
    retry_base_seconds: Annotated[NonNegativeFloat, env("TANDEM_RETRY_BASE_SECONDS")] = 5.0
    # Source syncs: a file or page larger than this fails alone; a sync's lease on its
    # source (one sync of a source at a time) lasts this long past its last heartbeat.
    sync_max_file_bytes: Annotated[PositiveInt, env("TANDEM_SYNC_MAX_FILE_BYTES")] = 25 << 20
    sync_lease_seconds: Annotated[float, env("TANDEM_SYNC_LEASE_SECONDS", ge=3.0)] = 60.0
    # Per claimed batch, one JSON line of stage timings (benchmarks/ingest_worker.py).
    timings_file: Annotated[Path | None, env("TANDEM_WORKER_TIMINGS_FILE")] = None
    # Each document is parsed in a child process (worker/sandbox.py) that is killed past
    # the timeout or its memory allowance, failing that file alone. One child by default:
    # parsing and chunking take 1-5 % of a batch's time, embedding 94-97 %
    # (benchmarks/results/ingest_throughput.json), and on a two-core machine a second
    # CPU-bound parser would take its core from the indexing model server.
    parse_timeout_seconds: Annotated[PositiveFloat, env("TANDEM_PARSE_TIMEOUT_SECONDS")] = 30.0
    parse_memory_bytes: Annotated[int, env("TANDEM_PARSE_MEMORY_BYTES", ge=64 * 1024 * 1024)] = (
        1024 * 1024 * 1024
    )
    parse_workers: Annotated[int, env("TANDEM_PARSE_WORKERS", gt=0, le=64)] = 1
    # Text kept per document; the rest is cut (the document's metadata says so).
    max_extracted_chars: Annotated[PositiveInt, env("TANDEM_MAX_EXTRACTED_CHARS")] = 10_000_000

    # More than one indexing server (see ModelServerUrls); batches are spread over them.
    indexing_model_server_urls_setting: Annotated[
        ModelServerUrls, env("INDEXING_MODEL_SERVER_URLS")
    ] = None

    @property
    def indexing_model_server_urls(self) -> list[str]:
        return endpoint_entries(
            self.indexing_model_server_urls_setting,
            self.indexing_model_server_host,
            self.indexing_model_server_port,
        )

    @property
    def indexing_model_server_url(self) -> str:
        """The first server, which the status probe reads (a DNS entry: its name)."""
        return self.indexing_model_server_urls[0].removeprefix("dns+")

    # Sent to the indexing server when set.
    model_server_api_key: ModelServerApiKey = None
    # Liveness: touched every heartbeat_seconds while the Celery loop and the lease
    # heartbeat make progress (never while a thread holds the GIL). Probes call the worker
    # dead when it is stale_seconds old; with the watchdog on, the worker exits by itself
    # then (faulthandler's C thread, which needs no GIL, dumps every thread and exits 1).
    heartbeat_file: Annotated[Path, env("TANDEM_WORKER_HEARTBEAT_FILE")] = Field(
        default_factory=lambda: default_heartbeat_file()
    )
    heartbeat_seconds: Annotated[PositiveFloat, env("TANDEM_WORKER_HEARTBEAT_SECONDS")] = 5.0
    # Whole seconds: the probes compare it in shell arithmetic.
    stale_seconds: Annotated[int, env("TANDEM_WORKER_STALE_SECONDS", ge=2)] = 60
    watchdog: Annotated[bool, env("TANDEM_WORKER_WATCHDOG")] = True

    @model_validator(mode="after")
    def _stale_after_missed_beats(self) -> WorkerSettings:
        if self.stale_seconds < 2 * self.heartbeat_seconds:
            raise ValueError(
                "TANDEM_WORKER_STALE_SECONDS must be at least twice TANDEM_WORKER_HEARTBEAT_SECONDS"
            )
        return self


def default_heartbeat_file() -> Path:
    """Per user, so workers of two users on one host never read each other's file."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / "tandem-worker.heartbeat"
    return Path(tempfile.gettempdir()) / f"tandem-worker-{os.getuid()}.heartbeat"


class ModelClientSettings(BaseSettings):
    """What a model server's client reads when its owner passes no key (ModelClient)."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    model_server_api_key: ModelServerApiKey = None


class WebSettings(BaseSettings):
    """The web server: static UI assets, and for local runs without nginx a proxy of
    ``/api/*`` to the API server."""

    # Compose passes `VAR:` lines through empty when the host leaves them unset: defaults.
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True, env_ignore_empty=True)

    bind_host: BindHost = "127.0.0.1"
    port: Annotated[Port, env("WEB_SERVER_PORT")] = 3000
    allowed_hosts: AllowedHosts = LOOPBACK_HOSTS
    # Unset in a deployment, where nginx routes /api/ to the API server itself.
    api_server_url: Annotated[
        str | None, env("API_SERVER_URL", pattern=r"^https?://[^\s/]+(/[^\s]*)?$")
    ] = None
    # Longest wait for the API server's next bytes (uploads of large files are parsed
    # before the API answers); connecting has its own short limit.
    proxy_timeout_seconds: Annotated[PositiveFloat, env("TANDEM_PROXY_TIMEOUT")] = 300.0
    proxy_connect_timeout_seconds: Annotated[PositiveFloat, env("TANDEM_PROXY_CONNECT_TIMEOUT")] = (
        5.0
    )

    @field_validator("api_server_url", mode="before")
    @classmethod
    def blank_is_unset(cls, value: object) -> object:
        if isinstance(value, str):
            return value.strip().rstrip("/") or None
        return value
