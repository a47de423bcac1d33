"""What `tandem up` runs on one machine, in start order, and how it shares the CPUs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tandem import cpu
from tandem.config import ModelServerSettings, StorageSettings, WorkerSettings
from tandem.cpu import CpuPriority
from tandem.local.launcher import display_path
from tandem.local.services import postgres, postgres_replica, redis
from tandem.local.services.model_key import ensure_key
from tandem.local.services.postgres import LocalPostgres
from tandem.local.services.postgres_replica import REPLICA_PREFIX, replica_name, standby_of
from tandem.local.services.redis import LocalRedis
from tandem.local.spec import ServiceSpec, tandem_command

# Every service `tandem up` may run, in start order (`tandem logs` knows them by name).
SERVICE_NAMES = (
    "postgres",
    "redis",
    "inference-model-server",
    "indexing-model-server",
    "api-server",
    "web-server",
    "background-worker",
)
# Celery's line once the worker consumes its queue ("celery@host ready.").
WORKER_READY_OUTPUT = " ready."
KEY_VARIABLE = "TANDEM_MODEL_SERVER_API_KEY"
# The one-host signal between the model servers (tandem.model_server.query_signal).
QUERY_SIGNAL_VARIABLE = "TANDEM_QUERY_SIGNAL_FILE"
QUERY_SIGNAL_FILE = "model-server-queries"


@dataclass(frozen=True)
class LocalPorts:
    api: int = 8080
    web: int = 3000
    postgres: int = 5433  # not 5432: leave a system PostgreSQL alone
    redis: int = 6380
    # Read replica N (`--read-replicas`) listens on replicas_from + N - 1.
    replicas_from: int = 5434


def replica_service_names(log_dir: Path) -> list[str]:
    """The read replicas' services that have written logs (`tandem logs` knows them)."""
    found = (path.name.split(".", 1)[0] for path in log_dir.glob(f"{REPLICA_PREFIX}*.log*"))
    return sorted(set(found))


def _postgres(data_dir: Path, port: int) -> tuple[ServiceSpec, str]:
    server = LocalPostgres(data_dir / "postgres", port)

    def ready() -> bool:
        if not server.is_ready():
            return False
        server.ensure_database()  # first start: create the database and pgvector
        return True

    spec = postgres.service_spec(data_dir / "postgres", port)
    spec.ready_check = ready
    spec.address = f"{server.host}:{port}"
    return spec, server.url()


def _replicas(data_dir: Path, ports: LocalPorts, count: int) -> tuple[list[ServiceSpec], list[str]]:
    """`count` hot standbys of the local primary, each copied from it on first start;
    their specs (started after the primary) and URLs (the API's DATABASE_READ_URLS)."""
    primary = LocalPostgres(data_dir / "postgres", ports.postgres)
    specs, urls = [], []
    for number in range(1, count + 1):
        standby = standby_of(
            primary, data_dir / replica_name(number), ports.replicas_from + number - 1
        )
        spec = postgres_replica.service_spec(standby)
        spec.ready_check = standby.is_ready
        spec.address = f"{standby.host}:{standby.port}"
        specs.append(spec)
        urls.append(standby.url())
    return specs, urls


def _redis(data_dir: Path, port: int) -> tuple[ServiceSpec, str]:
    server = LocalRedis(data_dir / "redis", port)
    spec = redis.service_spec(data_dir / "redis", port)
    spec.ready_check = server.is_ready
    spec.address = f"{server.host}:{port}"
    return spec, server.url()


def model_server_specs(
    models: ModelServerSettings, *, pin_cpus: bool = False, run_dir: Path | None = None
) -> tuple[list[ServiceSpec], dict[str, str]]:
    """Both model servers on this machine, and how each shares the CPUs (for the banner).

    By default they share every CPU by priority: the indexing server runs on all of them
    at the lowest CPU priority, so it takes only what queries leave idle, and the
    inference server at normal priority. ``pin_cpus`` instead gives each its own CPU set
    (the older scheme: queries keep a core to themselves, bulk work gets only the rest).
    With ``run_dir`` (the host's run dir), both share the query signal file there: the
    indexing server pauses between short sub-batches while queries run.
    """
    host = models.bind_host
    inference_env = {"TANDEM_CPU_PRIORITY": CpuPriority.NORMAL.value}
    indexing_env = {"TANDEM_CPU_PRIORITY": CpuPriority.IDLE.value}
    sharing = {
        "inference": "all CPUs, normal priority",
        "indexing": "all CPUs, lowest priority",
    }
    if pin_cpus:
        inference_cpus, indexing_cpus = (
            cpu.format_cpu_list(cpus) for cpus in cpu.split_for_roles(cpu.affinity())
        )
        inference_env["TANDEM_CPUS"] = inference_cpus
        indexing_env["TANDEM_CPUS"] = indexing_cpus
        sharing = {"inference": f"CPUs {inference_cpus}", "indexing": f"CPUs {indexing_cpus}"}
    ports = {"inference": models.inference_port, "indexing": models.indexing_port}
    envs = {"inference": inference_env, "indexing": indexing_env}
    if models.api_key:
        for env in envs.values():
            env[KEY_VARIABLE] = models.api_key
    if run_dir is not None:
        for env in envs.values():
            env[QUERY_SIGNAL_VARIABLE] = str(run_dir / QUERY_SIGNAL_FILE)
    specs = [
        ServiceSpec(
            name=f"{role}-model-server",
            argv=tandem_command("model-server", "--role", role),
            env=envs[role],
            ready_url=f"http://{host}:{ports[role]}/api/ready",
            address=f"http://{host}:{ports[role]}",
        )
        for role in ("inference", "indexing")
    ]
    return specs, sharing


def _replica(spec: ServiceSpec) -> bool:
    return spec.name.startswith(REPLICA_PREFIX)


def _access_note(require_api_key: bool) -> str:
    if not require_api_key:
        return "Open access: the API accepts requests without an API key (local use only)."
    return (
        "API keys required. Make the first one (an admin's) with:\n"
        "  tandem users add admin --admin && tandem api-key create --user admin --scope admin"
    )


def local_stack_specs(
    models: ModelServerSettings,
    storage: StorageSettings,
    ports: LocalPorts,
    *,
    pin_cpus: bool = False,
    require_api_key: bool = False,
    worker: WorkerSettings | None = None,
    read_replicas: int = 0,
) -> tuple[list[ServiceSpec], str]:
    """Postgres and Redis (unless URLs are given), both model servers sharing the CPUs by
    priority (or pinned), the API server (talks to the inference server), the web server
    (forwards /api/ to the API server, as nginx does in a deployment) and a worker (talks
    to the indexing server), restarted when its heartbeat goes stale.

    The model servers take a key (TANDEM_MODEL_SERVER_API_KEY: the one set, else one made
    once and kept in the data dir, mode 0600), and the API server and the worker send it:
    on a shared machine, other users' processes cannot use them.

    `read_replicas` hot standbys of the local PostgreSQL serve the API's reads (none
    without a local PostgreSQL: a given DATABASE_URL's replicas are DATABASE_READ_URLS)."""
    specs: list[ServiceSpec] = []
    storage.data_dir.mkdir(parents=True, exist_ok=True)
    key = models.api_key or ensure_key(storage.data_dir)
    models = models.model_copy(update={"api_key": key})
    worker = worker or WorkerSettings()
    heartbeat = storage.data_dir / "run" / "background-worker.heartbeat"
    database_url, redis_url = storage.database_url, storage.redis_url
    read_urls: list[str] = []
    if not database_url:
        spec, database_url = _postgres(storage.data_dir, ports.postgres)
        specs.append(spec)
        replicas, read_urls = _replicas(storage.data_dir, ports, read_replicas)
        specs += replicas
    elif read_replicas:
        raise ValueError("--read-replicas needs the local PostgreSQL (DATABASE_URL unset)")
    if not redis_url:
        spec, redis_url = _redis(storage.data_dir, ports.redis)
        specs.append(spec)
    host = models.bind_host
    inference_url = f"http://{host}:{models.inference_port}"
    indexing_url = f"http://{host}:{models.indexing_port}"
    servers, sharing = model_server_specs(
        models, pin_cpus=pin_cpus, run_dir=storage.data_dir / "run"
    )
    specs += servers
    shared = {"DATABASE_URL": database_url, "REDIS_URL": redis_url, KEY_VARIABLE: key}
    api_url = f"http://{host}:{ports.api}"
    web_url = f"http://{host}:{ports.web}"
    specs += [
        ServiceSpec(
            name="api-server",
            # Local and single-user by default: no API keys, said loudly in the banner.
            argv=tandem_command(
                "api", *(() if require_api_key else ("--open-access",)), "--port", str(ports.api)
            ),
            env=shared
            | {"MODEL_SERVER_HOST": host, "MODEL_SERVER_PORT": str(models.inference_port)}
            | ({"DATABASE_READ_URLS": ",".join(read_urls)} if read_urls else {}),
            ready_url=f"{api_url}/api/ready",
            address=api_url,
        ),
        ServiceSpec(
            name="web-server",
            argv=tandem_command("web", "--port", str(ports.web)),
            env={"API_SERVER_URL": api_url},
            ready_url=f"{web_url}/healthz",
            address=web_url,
        ),
        ServiceSpec(
            name="background-worker",
            argv=tandem_command("worker"),
            env=shared
            | {
                "INDEXING_MODEL_SERVER_HOST": host,
                "INDEXING_MODEL_SERVER_PORT": str(models.indexing_port),
                "TANDEM_WORKER_HEARTBEAT_FILE": str(heartbeat),
            },
            ready_output=WORKER_READY_OUTPUT,
            address="(queue consumer)",
            heartbeat_file=heartbeat,
            heartbeat_stale_seconds=worker.stale_seconds,
        ),
    ]
    banner = (
        f"Tandem is up: open {web_url}\n"
        f"  API server              {api_url}  (docs: {api_url}/docs)\n"
        f"  inference model server  {inference_url}  ({sharing['inference']})\n"
        f"  indexing model server   {indexing_url}  ({sharing['indexing']})\n"
        + "".join(f"  {s.name:<22}  {s.address}  (read replica)\n" for s in specs if _replica(s))
        + f"  data                    {display_path(storage.data_dir)}\n"
        f"{_access_note(require_api_key)}\n"
        "Try: tandem ingest README.md && tandem search 'model server'\n"
        "Press Ctrl-C to stop."
    )
    return specs, banner
