"""Access on the wire: a caller's `{public, users, groups}` into reader tokens (by name,
checked), and reader tokens back into names for listings."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from tandem.db import principals
from tandem.db.models import PUBLIC, Group, User
from tandem.wire.api import AccessIn, AccessOut
from tandem.wire.errors import ApiError


def resolve(session: Session, access: AccessIn | None, owner_id: int | None) -> tuple[str, ...]:
    """The reader tokens of `access` (public when not given); 422 for an unknown name."""
    given = access or AccessIn()
    try:
        tokens = principals.readers(
            session,
            principals.Access(given.public, tuple(given.users), tuple(given.groups)),
            owner_id,
        )
    except principals.PrincipalError as exc:
        raise ApiError(422, f"access: {exc}", "validation_error") from exc
    return tuple(tokens)


def readers_of(session: Session, readers: Iterable[Sequence[str]]) -> dict[str, str]:
    """{token: name} for every user and group token among `readers`, in two queries."""
    tokens = {t for r in readers for t in r if t != PUBLIC}
    users = [int(t[2:]) for t in tokens if t.startswith("u:")]
    groups = [int(t[2:]) for t in tokens if t.startswith("g:")]
    names: dict[str, str] = {}
    if users:
        for user_id, name in session.execute(select(User.id, User.name).where(User.id.in_(users))):
            names[principals.user_token(user_id)] = name
    if groups:
        rows = session.execute(select(Group.id, Group.name).where(Group.id.in_(groups)))
        for group_id, name in rows:
            names[principals.group_token(group_id)] = name
    return names


def access_out(readers: Sequence[str], names: dict[str, str]) -> AccessOut:
    return AccessOut(
        public=PUBLIC in readers,
        users=sorted(names[t] for t in readers if t.startswith("u:") and t in names),
        groups=sorted(names[t] for t in readers if t.startswith("g:") and t in names),
    )
