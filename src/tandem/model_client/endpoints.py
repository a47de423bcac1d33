"""Several model servers of one role behind one client: which one takes the next request,
which are down, and which addresses a DNS name stands for.

An entry is a URL (`http://host:port`, that one server) or `dns+http://name:port`: every
A/AAAA record of `name`, re-resolved every `resolve_seconds`, so Compose's `--scale`
and a Kubernetes headless Service add and remove servers without a restart.

Requests go to the up endpoint with the fewest requests in flight (ties in turn). One
that fails (connection error, timeout, 502/503/504) is marked down and skipped; a
background thread probes it (`GET /api/ready`) after a back-off that doubles up to
`max_backoff` and takes it back when it answers 200. A pool of one URL never starts that
thread: a down server is then simply tried again by the next request, as before.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

DNS_PREFIX = "dns+"
# (host, port) -> the addresses it resolves to; a stub in tests.
Resolver = Callable[[str, int], list[str]]
# url -> whether the server is ready to take requests again.
ReadyProbe = Callable[[str], bool]


def resolve_addresses(host: str, port: int) -> list[str]:
    """Every distinct A/AAAA address of `host`, in the resolver's order."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def address_url(scheme: str, address: str, port: int) -> str:
    return f"{scheme}://[{address}]:{port}" if ":" in address else f"{scheme}://{address}:{port}"


@dataclass(frozen=True, slots=True)
class EndpointState:
    """One endpoint's figures, for metrics and the status page."""

    url: str
    up: bool
    in_flight: int
    requests: int
    failures: int


class Endpoint:
    """One model server address. Mutated only under its pool's lock."""

    __slots__ = ("backoff", "failures", "in_flight", "requests", "retry_at", "url")

    def __init__(self, url: str) -> None:
        self.url = url
        self.in_flight = 0
        self.requests = 0
        self.failures = 0
        self.retry_at: float | None = None  # None: up; else when to probe it next
        self.backoff = 0.0

    @property
    def up(self) -> bool:
        return self.retry_at is None

    def state(self) -> EndpointState:
        return EndpointState(self.url, self.up, self.in_flight, self.requests, self.failures)


@dataclass(slots=True)
class _DnsEntry:
    scheme: str
    host: str
    port: int
    endpoints: list[Endpoint]
    resolve_at: float = 0.0


def _parse_dns_entry(entry: str) -> _DnsEntry:
    parts = urlsplit(entry.removeprefix(DNS_PREFIX))
    if not parts.hostname or parts.scheme not in ("http", "https"):
        raise ValueError(f"not a dns+http(s)://name:port entry: {entry!r}")
    return _DnsEntry(parts.scheme, parts.hostname, parts.port or 80, [])


class EndpointPool:
    def __init__(
        self,
        entries: Sequence[str],
        *,
        probe: ReadyProbe,
        resolver: Resolver = resolve_addresses,
        resolve_seconds: float = 30.0,
        min_backoff: float = 1.0,
        max_backoff: float = 30.0,
    ) -> None:
        if not entries:
            raise ValueError("a model client needs at least one server URL")
        self._lock = threading.Lock()
        self._probe = probe
        self._resolver = resolver
        self._resolve_seconds = resolve_seconds
        self._min_backoff = min_backoff
        self._max_backoff = max_backoff
        self._static = [Endpoint(e) for e in entries if not e.startswith(DNS_PREFIX)]
        self._dns = [_parse_dns_entry(e) for e in entries if e.startswith(DNS_PREFIX)]
        self._endpoints: list[Endpoint] = list(self._static)
        self._cursor = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        for dns in self._dns:
            self._resolve(dns)
        if len(self._static) > 1 or self._dns:
            self._thread = threading.Thread(target=self._maintain, name="model-pool", daemon=True)
            self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)

    def states(self) -> list[EndpointState]:
        with self._lock:
            return [e.state() for e in self._endpoints]

    def acquire(self, exclude: Sequence[Endpoint] = ()) -> Endpoint | None:
        """The endpoint for the next request (counted in flight until `release`), or None
        when every endpoint is in `exclude` (or a DNS name has no address yet). Down
        endpoints are used only when no up one is left: never refuse without trying."""
        with self._lock:
            endpoints = self._endpoints
            count = len(endpoints)
            best: Endpoint | None = None
            best_at = 0
            for offset in range(count):
                index = (self._cursor + offset) % count
                endpoint = endpoints[index]
                if (
                    endpoint.up
                    and endpoint not in exclude
                    and (best is None or endpoint.in_flight < best.in_flight)
                ):
                    best, best_at = endpoint, index
            if best is None:
                down = [e for e in endpoints if e not in exclude]
                if not down:
                    return None
                best = min(down, key=lambda e: e.retry_at or 0.0)
            else:
                self._cursor = best_at + 1
            best.in_flight += 1
            best.requests += 1
            return best

    def release(self, endpoint: Endpoint, error: str | None = None) -> None:
        """The request on `endpoint` ended: `error` (its reason) marks the endpoint down."""
        with self._lock:
            endpoint.in_flight -= 1
            was_up = endpoint.up
            if error is None:
                endpoint.retry_at, endpoint.backoff = None, 0.0
            else:
                endpoint.failures += 1
                endpoint.backoff = min(
                    self._max_backoff, max(self._min_backoff, endpoint.backoff * 2)
                )
                endpoint.retry_at = time.monotonic() + endpoint.backoff
        if error is None and not was_up:
            log.info("model_endpoint_up url=%s via=request", endpoint.url)
        elif error is not None and was_up:
            log.warning("model_endpoint_down url=%s error=%s", endpoint.url, error)

    def _maintain(self) -> None:
        while not self._stop.wait(0.25):
            now = time.monotonic()
            for dns in self._dns:
                if now >= dns.resolve_at:
                    self._resolve(dns)
            with self._lock:
                due = [e for e in self._endpoints if e.retry_at is not None and now >= e.retry_at]
            for endpoint in due:
                self._probe_back(endpoint)

    def _probe_back(self, endpoint: Endpoint) -> None:
        ready = self._probe(endpoint.url)
        with self._lock:
            if endpoint.up:
                return  # a request brought it back meanwhile
            if ready:
                endpoint.retry_at, endpoint.backoff = None, 0.0
            else:
                endpoint.backoff = min(self._max_backoff, endpoint.backoff * 2)
                endpoint.retry_at = time.monotonic() + endpoint.backoff
        if ready:
            log.info("model_endpoint_up url=%s via=probe", endpoint.url)

    def _resolve(self, dns: _DnsEntry) -> None:
        try:
            addresses = self._resolver(dns.host, dns.port)
        except OSError as exc:
            # Keep the addresses we had: a resolver hiccup is not every server gone.
            log.warning("model_endpoints_unresolved name=%s error=%s", dns.host, exc)
            if dns.endpoints:
                dns.resolve_at = time.monotonic() + self._resolve_seconds
                return
            addresses = []
        urls = [address_url(dns.scheme, a, dns.port) for a in addresses]
        with self._lock:
            known = {e.url: e for e in dns.endpoints}
            dns.endpoints = [known.get(url) or Endpoint(url) for url in urls]
            self._endpoints = self._static + [e for d in self._dns for e in d.endpoints]
        added, removed = set(urls) - set(known), set(known) - set(urls)
        if added or removed:
            log.info(
                "model_endpoints_resolved name=%s addresses=%d added=%s removed=%s",
                dns.host,
                len(urls),
                ",".join(sorted(added)) or "-",
                ",".join(sorted(removed)) or "-",
            )
        # A name with no address yet (a server still starting) is asked again soon.
        dns.resolve_at = time.monotonic() + (self._resolve_seconds if urls else 1.0)
