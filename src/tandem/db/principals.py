"""Users, groups and API keys, and who may read what.

Access is kept as *reader tokens* on each document, chunk and source: `public`, `u:<user
id>`, `g:<group id>`. A caller's tokens are `public`, its user's and its groups'; a row is
readable when the two sets meet (`readers && :tokens`, a GIN index on chunks), which every
search, listing and read applies inside its SQL. Admins and service keys with the admin
scope read everything. Ids, not names, so a user removed and added again under the same
name inherits nothing.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import Session

from tandem.db.models import PUBLIC, ApiKey, Group, GroupMember, User
from tandem.db.scopes import Scope as Scope

KEY_PREFIX = "tdm_"
Principal = TypeVar("Principal", User, Group)


class PrincipalError(ValueError):
    """A name that is taken, or that names nobody: the message says which."""


def user_token(user_id: int) -> str:
    return f"u:{user_id}"


def group_token(group_id: int) -> str:
    return f"g:{group_id}"


@dataclass(frozen=True, slots=True)
class Access:
    """Who may read a document, as a caller gives it (by name)."""

    public: bool = True
    users: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()


def _ids(
    session: Session, model: type[User] | type[Group], names: tuple[str, ...], kind: str
) -> list[int]:
    """The ids of the named users or groups; every name must exist."""
    if not names:
        return []
    found = dict(session.execute(select(model.name, model.id).where(model.name.in_(names))).all())
    missing = sorted(set(names) - set(found))
    if missing:
        raise PrincipalError(f"no {kind} named {', '.join(map(repr, missing))}")
    return list(found.values())


def readers(session: Session, access: Access, owner_id: int | None = None) -> list[str]:
    """The reader tokens of `access`; its owner (the uploader) always reads it."""
    tokens: set[str] = {PUBLIC} if access.public else set()
    tokens |= {user_token(i) for i in _ids(session, User, access.users, "user")}
    tokens |= {group_token(i) for i in _ids(session, Group, access.groups, "group")}
    if owner_id is not None:
        tokens.add(user_token(owner_id))
    return sorted(tokens)


# --- users and groups -------------------------------------------------------------------


def _add(session: Session, principal: User | Group, kind: str) -> None:
    model = type(principal)
    if session.execute(select(model.id).where(model.name == principal.name)).first() is not None:
        raise PrincipalError(f"a {kind} named {principal.name!r} exists already")
    session.add(principal)
    session.flush()


def add_user(session: Session, name: str, *, admin: bool = False) -> User:
    user = User(name=name, is_admin=admin)
    _add(session, user, "user")
    return user


def _named(session: Session, model: type[Principal], name: str, kind: str) -> Principal:
    found = session.execute(select(model).where(model.name == name)).scalar_one_or_none()
    if found is None:
        raise PrincipalError(f"no {kind} named {name!r}")
    return found


def get_user(session: Session, name: str) -> User:
    return _named(session, User, name, "user")


def _memberships(session: Session) -> list[tuple[int, int, str, str]]:
    """(group id, user id, group name, user name) of every membership, by group then user
    name: each user's groups and each group's members come out sorted."""
    rows = session.execute(
        select(GroupMember.group_id, GroupMember.user_id, Group.name, User.name)
        .join(Group, Group.id == GroupMember.group_id)
        .join(User, User.id == GroupMember.user_id)
        .order_by(Group.name, User.name)
    ).all()
    return [(int(g), int(u), str(gn), str(un)) for g, u, gn, un in rows]


def _listed(session: Session, model: type[Principal]) -> list[tuple[Principal, list[str]]]:
    """Every user with its groups' names, or every group with its members' names."""
    related: dict[int, list[str]] = {}
    for group_id, user_id, group, user in _memberships(session):
        if model is User:
            related.setdefault(user_id, []).append(group)
        else:
            related.setdefault(group_id, []).append(user)
    principals = session.execute(select(model).order_by(model.name)).scalars()
    return [(p, related.get(p.id, [])) for p in principals]


def remove_user(session: Session, name: str) -> None:
    """Its keys go with it (cascade); documents it uploaded stay, readable as before."""
    session.delete(get_user(session, name))


def list_users(session: Session) -> list[tuple[User, list[str]]]:
    return _listed(session, User)


def add_group(session: Session, name: str, members: Sequence[str] = ()) -> Group:
    group = Group(name=name)
    _add(session, group, "group")
    for member in members:
        add_member(session, name, member)
    return group


def _group(session: Session, name: str) -> Group:
    return _named(session, Group, name, "group")


def add_member(session: Session, group: str, user: str) -> None:
    found, member = _group(session, group), get_user(session, user)
    if session.get(GroupMember, (found.id, member.id)) is None:
        session.add(GroupMember(group_id=found.id, user_id=member.id))
        session.flush()


def remove_member(session: Session, group: str, user: str) -> bool:
    found, member = _group(session, group), get_user(session, user)
    result = session.execute(
        delete(GroupMember).where(
            GroupMember.group_id == found.id, GroupMember.user_id == member.id
        )
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def list_groups(session: Session) -> list[tuple[Group, list[str]]]:
    return _listed(session, Group)


# --- API keys ---------------------------------------------------------------------------


def hash_key(key: str) -> str:
    # SHA-256 of a 256-bit random key: no salt or slow hash needed at that entropy.
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(
    session: Session,
    name: str,
    *,
    scope: Scope = Scope.ADMIN,
    user: str | None = None,
    expires_at: datetime | None = None,
) -> tuple[ApiKey, str]:
    """Store a new key's hash; (its row, the key itself, shown once and never stored)."""
    owner = get_user(session, user) if user is not None else None
    if scope is Scope.ADMIN and owner is not None and not owner.is_admin:
        raise PrincipalError(
            f"{owner.name!r} is not an admin: an admin key needs an admin user, or no user"
        )
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(
        name=name,
        prefix=key[: len(KEY_PREFIX) + 6],
        key_hash=hash_key(key),
        scope=scope.value,
        user_id=owner.id if owner else None,
        expires_at=expires_at,
    )
    session.add(row)
    session.flush()
    return row, key


def list_keys(session: Session) -> list[tuple[ApiKey, str | None]]:
    rows = session.execute(
        select(ApiKey, User.name).outerjoin(User, User.id == ApiKey.user_id).order_by(ApiKey.id)
    ).all()
    return [(key, user) for key, user in rows]


def revoke_key(session: Session, id_or_key: str) -> bool:
    """Revoke by id, or by the key itself; False when no live key matched."""
    match = ApiKey.key_hash == hash_key(id_or_key)
    if id_or_key.isdigit():
        match = or_(match, ApiKey.id == int(id_or_key))
    key = session.execute(
        select(ApiKey).where(match, ApiKey.revoked_at.is_(None))
    ).scalar_one_or_none()
    if key is None:
        return False
    key.revoked_at = datetime.now(UTC)
    return True


@dataclass(frozen=True, slots=True)
class Caller:
    """The principal a request runs as: an API key's holder, or open access (no key: one
    implicit admin, as the local stack runs by default)."""

    key_id: int | None
    name: str  # the key's name
    scope: Scope = Scope.ADMIN
    user_id: int | None = None
    user: str | None = None  # None: a service key, or open access
    # The reader tokens it reads with; None: it reads everything (an admin user's key, or
    # an admin service key).
    readers: tuple[str, ...] | None = None
    expires_at: datetime | None = None

    def may(self, needed: Scope) -> bool:
        return self.scope.allows(needed)


def key_caller(session: Session, digest: str) -> Caller | None:
    """Who a key stands for, by its digest: None when unknown, revoked or expired."""
    row = session.execute(
        select(ApiKey, User)
        .outerjoin(User, User.id == ApiKey.user_id)
        .where(
            ApiKey.key_hash == digest,
            ApiKey.revoked_at.is_(None),
            or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > func.now()),
        )
    ).first()
    if row is None:
        return None
    key, user = row
    scope = Scope(key.scope)
    tokens: list[str] = [PUBLIC]
    if user is not None:
        tokens.append(user_token(user.id))
        group_ids = session.execute(
            select(GroupMember.group_id).where(GroupMember.user_id == user.id)
        ).scalars()
        tokens += [group_token(g) for g in group_ids]
    reads_all = user.is_admin if user is not None else scope is Scope.ADMIN
    return Caller(
        key_id=key.id,
        name=key.name,
        scope=scope,
        user_id=user.id if user else None,
        user=user.name if user else None,
        readers=None if reads_all else tuple(tokens),
        expires_at=key.expires_at,
    )
