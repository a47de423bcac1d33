"""Who the caller is (`/api/me`), and users and groups for admins (thin adapters over
tandem.db.principals; keys are made with `tandem api-key create`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from fastapi import APIRouter
from sqlalchemy.orm import Session

from tandem.api.state import Administering, Searching, StateDep
from tandem.db import principals
from tandem.wire.api import CallerOut, GroupIn, GroupOut, UserIn, UserOut
from tandem.wire.errors import ApiError, error_responses

router = APIRouter(
    prefix="/api", tags=["principals"], responses=error_responses(400, 401, 403, 422)
)


@contextmanager
def _changing(missing: int = 404) -> Iterator[None]:
    """A name taken (409) or naming nobody (`missing`: 404 for the path's names, 422 for
    the body's), as the error envelope."""
    try:
        yield
    except principals.PrincipalError as exc:
        if "exists already" in str(exc):
            raise ApiError(409, str(exc), "conflict") from exc
        kind = "not_found" if missing == 404 else "validation_error"
        raise ApiError(missing, str(exc), kind) from exc


@router.get("/me", response_model=CallerOut)
def me(caller: Searching) -> CallerOut:
    return CallerOut(
        user=caller.user,
        key_name=caller.name if caller.key_id is not None else None,
        scope=caller.scope.value,
        reads_everything=caller.readers is None,
        open_access=caller.key_id is None,
    )


def _users(session: Session) -> list[UserOut]:
    return [
        UserOut(name=u.name, admin=u.is_admin, groups=g) for u, g in principals.list_users(session)
    ]


@router.get("/users", response_model=list[UserOut])
def list_users(state: StateDep, _caller: Administering) -> list[UserOut]:
    with state.sessions() as session:
        return _users(session)


@router.post("/users", response_model=UserOut, status_code=201, responses=error_responses(409))
def add_user(body: UserIn, state: StateDep, _caller: Administering) -> UserOut:
    with _changing(), state.sessions.begin() as session:
        user = principals.add_user(session, body.name, admin=body.admin)
        return UserOut(name=user.name, admin=user.is_admin, groups=[])


@router.delete("/users/{name}", status_code=204, responses=error_responses(404))
def remove_user(name: str, state: StateDep, _caller: Administering) -> None:
    with _changing(), state.sessions.begin() as session:
        principals.remove_user(session, name)


@router.get("/groups", response_model=list[GroupOut])
def list_groups(state: StateDep, _caller: Administering) -> list[GroupOut]:
    with state.sessions() as session:
        return [GroupOut(name=g.name, members=m) for g, m in principals.list_groups(session)]


@router.post("/groups", response_model=GroupOut, status_code=201, responses=error_responses(409))
def add_group(body: GroupIn, state: StateDep, _caller: Administering) -> GroupOut:
    with _changing(missing=422), state.sessions.begin() as session:
        principals.add_group(session, body.name, body.members)
        return GroupOut(name=body.name, members=sorted(body.members))


@router.put("/groups/{group}/members/{user}", status_code=204, responses=error_responses(404))
def add_member(group: str, user: str, state: StateDep, _caller: Administering) -> None:
    with _changing(), state.sessions.begin() as session:
        principals.add_member(session, group, user)


@router.delete("/groups/{group}/members/{user}", status_code=204, responses=error_responses(404))
def remove_member(group: str, user: str, state: StateDep, _caller: Administering) -> None:
    with _changing(), state.sessions.begin() as session:
        principals.remove_member(session, group, user)
