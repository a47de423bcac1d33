"""Resources of one API server process, owned by its lifespan, and the route dependencies."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass, field
from typing import Annotated

from celery import Celery
from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from redis import Redis
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from tandem.config import ApiSettings
from tandem.db.models import ApiKey
from tandem.http_errors import ApiError
from tandem.index.protocol import DocumentIndex
from tandem.model_client import ModelClient
from tandem.model_status import ModelServerStatus

KEY_PREFIX = "tdm_"


def new_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_api_key(session: Session, name: str) -> str:
    """Store a new key's hash; the key itself is shown once and never stored."""
    key = new_api_key()
    session.add(ApiKey(name=name, prefix=key[: len(KEY_PREFIX) + 6], key_hash=hash_key(key)))
    return key


@dataclass
class ApiState:
    settings: ApiSettings
    engine: Engine
    sessions: sessionmaker[Session]
    index: DocumentIndex
    inference: ModelClient  # the inference model server: queries only
    queue: Celery
    redis: Redis
    inference_status: ModelServerStatus | None = None
    _valid_keys: dict[str, float] = field(default_factory=dict)

    def record_inference_status(self, status: ModelServerStatus) -> None:
        self.inference_status = status

    def key_is_valid(self, key: str) -> bool:
        digest = hash_key(key)
        now = time.monotonic()
        if self._valid_keys.get(digest, 0.0) > now:
            return True
        with self.sessions() as session:
            found = session.execute(
                select(ApiKey.id).where(ApiKey.key_hash == digest, ApiKey.revoked_at.is_(None))
            ).first()
        if found is None:
            return False
        self._valid_keys[digest] = now + self.settings.api_key_cache_seconds
        return True


def get_state(request: Request) -> ApiState:
    state: ApiState = request.app.state.api
    return state


StateDep = Annotated[ApiState, Depends(get_state)]


# Declared so the OpenAPI document says which routes need a key (and clients and the
# fuzzer send one); the checks and the error envelope are ours (auto_error off).
API_KEY = HTTPBearer(
    scheme_name="ApiKey",
    description="An API key from `tandem api-key create`, as `Authorization: Bearer <key>`",
    auto_error=False,
)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Security(API_KEY)]


def require_api_key(state: StateDep, credentials: Credentials) -> None:
    if state.settings.open_access:
        return
    key = credentials.credentials if credentials is not None else ""
    challenge = {"WWW-Authenticate": "Bearer"}
    if not key.strip():
        raise ApiError(
            401,
            "an API key is required: send `Authorization: Bearer <key>` "
            "(create one with `tandem api-key create`)",
            "unauthorized",
            challenge,
        )
    if not state.key_is_valid(key.strip()):
        raise ApiError(401, "the API key is not valid or was revoked", "unauthorized", challenge)


Authorized = Depends(require_api_key)
