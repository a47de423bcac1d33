"""Who is calling: an API key turned into a `Caller`, cheaply and with bounded cost.

Keys are checked by `auth_middleware.ApiKeyMiddleware` before any body is read; the routes
read the `Caller` it leaves in the request's state. A key is looked up (SHA-256 digest,
not revoked) in the database once per `valid_seconds`; an unknown key is remembered as
unknown for a moment, and each client address may fail only so many checks a minute
before further unknown keys are refused with 429 without a lookup. Users and scopes fit
behind `KeyLookup`: it returns whatever `Caller` a key stands for.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

import anyio.to_thread
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from tandem.db.principals import Caller, hash_key, key_caller

# A key nobody has is not looked up again for this long: a client retrying one bad key
# costs no queries, and a key created in the meantime is usable almost at once.
UNKNOWN_KEY_SECONDS = 2.0
# Bounds on what the caches and the failure counters hold; beyond them the oldest go.
MAX_ENTRIES = 10_000
V = TypeVar("V")


OPEN_ACCESS = Caller(key_id=None, name="open access")


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a key was not accepted: 401 (unknown or revoked), or 429 after `retry_after`."""

    status: int
    retry_after: int = 0


UNKNOWN_KEY = Refusal(401)
KeyLookup = Callable[[str], Caller | None]  # SHA-256 hex digest -> its caller, if valid


# A key's last use is written at most this often (its lookups happen every few seconds).
TOUCH_SECONDS = 60


def database_lookup(sessions: sessionmaker[Session]) -> KeyLookup:
    """A stored digest whose key is neither revoked nor expired: its holder, their scope
    and the reader tokens of the user and their groups; the key's use is recorded."""

    def lookup(digest: str) -> Caller | None:
        with sessions.begin() as session:
            caller = key_caller(session, digest)
            if caller is None:
                return None
            session.execute(
                text(
                    "UPDATE api_keys SET last_used_at = now() WHERE id = :id AND "
                    "(last_used_at IS NULL OR last_used_at < now() - make_interval(secs => :s))"
                ),
                {"id": caller.key_id, "s": TOUCH_SECONDS},
            )
        return caller

    return lookup


def _trim(entries: dict[str, V]) -> None:
    # Insertion order is age order (entries are re-inserted when renewed).
    while len(entries) > MAX_ENTRIES:
        del entries[next(iter(entries))]


class FailureLimiter:
    """A token bucket of failed key checks per client address: `per_minute` at once, then
    one more every 60 / `per_minute` seconds."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, at)

    def _tokens(self, client: str, now: float) -> float:
        tokens, at = self._buckets.get(client, (self.capacity, now))
        return min(self.capacity, tokens + (now - at) * self.rate)

    def retry_after(self, client: str) -> int:
        """Whole seconds until `client` may fail again; 0 when it may now."""
        tokens = self._tokens(client, self.clock())
        return 0 if tokens >= 1.0 else math.ceil((1.0 - tokens) / self.rate)

    def record_failure(self, client: str) -> None:
        now = self.clock()
        tokens = self._tokens(client, now) - 1.0
        self._buckets.pop(client, None)
        self._buckets[client] = (max(tokens, 0.0), now)
        _trim(self._buckets)


@dataclass(eq=False)
class Authenticator:
    """API key -> `Caller`, with a cache of valid keys (so revocation takes at most
    `valid_seconds`), one of unknown keys, and the failure limit per client address.

    Used from the event loop only (the lookup itself runs in a worker thread), so the
    caches need no lock.
    """

    lookup: KeyLookup
    _: KW_ONLY
    valid_seconds: float
    failures: FailureLimiter
    unknown_seconds: float = UNKNOWN_KEY_SECONDS
    clock: Callable[[], float] = time.monotonic
    _valid: dict[str, tuple[float, Caller]] = field(default_factory=dict, init=False, repr=False)
    _unknown: dict[str, float] = field(default_factory=dict, init=False, repr=False)

    async def authenticate(self, key: str, client: str) -> Caller | Refusal:
        digest = hash_key(key)
        cached = self._valid.get(digest)
        if cached is not None and cached[0] > self.clock():
            return cached[1]
        if self._unknown.get(digest, 0.0) > self.clock():
            return self._failed(client)
        wait = self.failures.retry_after(client)
        if wait:
            return Refusal(429, wait)  # over its budget: no lookup for this client now
        caller = await anyio.to_thread.run_sync(self.lookup, digest)
        now = self.clock()
        if caller is None:
            self._unknown.pop(digest, None)
            self._unknown[digest] = now + self.unknown_seconds
            _trim(self._unknown)
            return self._failed(client)
        self._unknown.pop(digest, None)
        self._valid.pop(digest, None)
        until = now + self.valid_seconds
        if caller.expires_at is not None:  # an expiring key is not cached past its expiry
            left = (caller.expires_at - datetime.now(UTC)).total_seconds()
            until = min(until, now + max(left, 0.0))
        self._valid[digest] = (until, caller)
        _trim(self._valid)
        return caller

    def _failed(self, client: str) -> Refusal:
        wait = self.failures.retry_after(client)
        if wait:
            return Refusal(429, wait)
        self.failures.record_failure(client)
        return UNKNOWN_KEY
