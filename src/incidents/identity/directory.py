"""The directory of users and groups, and what each is granted.

Grants are roles (``timeline.reader``), attributes (``pii_access``) and a clearance on
the overview's scale. Groups carry grants that their members inherit. A request's
:class:`~incidents.policy.model.Subject` is the union of the user's own grants and
those of its groups (the highest clearance wins).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Row,
    and_,
    delete,
    func,
    insert,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.exc import IntegrityError

from incidents.events.timeformat import now_micros
from incidents.policy.model import ATTRIBUTES, CLEARANCE_LEVELS, ROLES, Subject
from incidents.store.engine import writes
from incidents.store.schema import api_tokens, grants, group_members, groups, users


class GrantKind(StrEnum):
    ROLE = "role"
    ATTRIBUTE = "attribute"
    CLEARANCE = "clearance"


class PrincipalType(StrEnum):
    USER = "user"
    GROUP = "group"


class DirectoryError(ValueError):
    """A request to the directory that cannot be carried out; the message says why."""


class NotFoundError(DirectoryError):
    """No such user or group."""


class ConflictError(DirectoryError):
    """The user or group already exists."""


@dataclass(frozen=True, slots=True)
class Grants:
    roles: frozenset[str] = frozenset()
    attributes: frozenset[str] = frozenset()
    clearance: str | None = None


@dataclass(frozen=True, slots=True)
class User:
    user_id: str
    email: str
    display_name: str | None
    external_id: str | None
    active: bool
    created_us: int
    updated_us: int
    grants: Grants = Grants()
    groups: tuple[tuple[str, str], ...] = ()  # (group_id, name)


@dataclass(frozen=True, slots=True)
class Group:
    group_id: str
    name: str
    external_id: str | None
    created_us: int
    updated_us: int
    grants: Grants = Grants()
    members: tuple[tuple[str, str], ...] = field(default=())  # (user_id, email)


def validate_grant(kind: GrantKind, value: str) -> str:
    """Check a role, attribute or clearance name; the error lists the known ones."""
    known = {
        GrantKind.ROLE: ROLES,
        GrantKind.ATTRIBUTE: ATTRIBUTES,
        GrantKind.CLEARANCE: CLEARANCE_LEVELS,
    }[kind]
    if value not in known:
        raise DirectoryError(f"unknown {kind.value} {value!r}; known: {', '.join(known)}")
    return value


def _normal_email(email: str) -> str:
    email = email.strip().lower()
    if not email or ("@" not in email and not email.startswith("system:")):
        raise DirectoryError(f"{email!r} is not an email address (or a system:NAME account)")
    return email


def _revoke_tokens(conn: Connection, email: str) -> None:
    conn.execute(
        update(api_tokens)
        .where(func.lower(api_tokens.c.subject) == email, api_tokens.c.revoked_us.is_(None))
        .values(revoked_us=now_micros())
    )


def _rank(level: str | None) -> int:
    return CLEARANCE_LEVELS.index(level) if level in CLEARANCE_LEVELS else -1


class Directory:
    """Users, groups and grants in the database, with the subject lookup used per request."""

    def __init__(self, engine: Engine, cache_seconds: float = 5.0) -> None:
        self._engine = engine
        # Its write transactions read first: they take the write lock at once.
        self._writes = writes(engine)
        self._cache_seconds = cache_seconds
        self._cache: dict[str, tuple[Subject | None, float]] = {}
        self._lock = threading.Lock()
        self._listeners: list[Callable[[], None]] = []

    # --- subjects ---------------------------------------------------------------------

    def on_change(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` after every write, so caches built on the directory drop."""
        self._listeners.append(callback)

    def invalidate(self) -> None:
        with self._lock:
            self._cache.clear()
        for callback in self._listeners:
            callback()

    def subject_for(self, email: str, extra_groups: Iterable[str] = ()) -> Subject | None:
        """The subject for an active user, or None if unknown or deactivated.

        ``extra_groups`` names groups asserted by an identity provider (OIDC claims);
        their grants apply as if the user were a member.
        """
        extra = tuple(sorted(set(extra_groups)))
        key = email.lower() + "\x00" + "\x00".join(extra)
        now = time.monotonic()
        cached = self._cache.get(key)
        if cached is not None and cached[1] > now:
            return cached[0]
        subject = self._load_subject(email.lower(), extra)
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[key] = (subject, now + self._cache_seconds)
        return subject

    def _load_subject(self, email: str, extra_groups: tuple[str, ...]) -> Subject | None:
        with self._engine.connect() as conn:
            row = conn.execute(
                select(users.c.user_id, users.c.active).where(users.c.email == email)
            ).first()
            if row is None or not row.active:
                return None
            memberships = self._user_groups(conn, row.user_id)
            if extra_groups:
                named = conn.execute(
                    select(groups.c.group_id, groups.c.name).where(groups.c.name.in_(extra_groups))
                ).all()
                memberships = tuple(sorted(set(memberships) | {(g[0], g[1]) for g in named}))
            principals = [(PrincipalType.USER.value, row.user_id)] + [
                (PrincipalType.GROUP.value, gid) for gid, _ in memberships
            ]
            combined = self._grants(conn, principals)
        return Subject(
            id=email,
            roles=combined.roles,
            attributes=combined.attributes,
            clearance=combined.clearance or "public",
            groups=frozenset(name for _, name in memberships),
        )

    # --- reads ------------------------------------------------------------------------

    @staticmethod
    def _user_groups(conn: Connection, user_id: str) -> tuple[tuple[str, str], ...]:
        rows = conn.execute(
            select(groups.c.group_id, groups.c.name)
            .join(group_members, group_members.c.group_id == groups.c.group_id)
            .where(group_members.c.user_id == user_id)
            .order_by(groups.c.name)
        ).all()
        return tuple((r[0], r[1]) for r in rows)

    @staticmethod
    def _grants(conn: Connection, principals: list[tuple[str, str]]) -> Grants:
        if not principals:
            return Grants()
        conds = [
            and_(grants.c.principal_type == ptype, grants.c.principal_id == pid)
            for ptype, pid in principals
        ]
        rows = conn.execute(select(grants.c.kind, grants.c.value).where(or_(*conds))).all()
        roles = frozenset(v for k, v in rows if k == GrantKind.ROLE)
        attributes = frozenset(v for k, v in rows if k == GrantKind.ATTRIBUTE)
        levels = [v for k, v in rows if k == GrantKind.CLEARANCE]
        clearance = max(levels, key=_rank) if levels else None
        return Grants(roles, attributes, clearance)

    def _user_from_row(self, conn: Connection, row: Row[Any]) -> User:
        m = row._mapping
        user_id = m["user_id"]
        return User(
            user_id=user_id,
            email=m["email"],
            display_name=m["display_name"],
            external_id=m["external_id"],
            active=bool(m["active"]),
            created_us=m["created_us"],
            updated_us=m["updated_us"],
            grants=self._grants(conn, [(PrincipalType.USER.value, user_id)]),
            groups=self._user_groups(conn, user_id),
        )

    def get_user(self, user_id: str) -> User:
        with self._engine.connect() as conn:
            row = conn.execute(select(users).where(users.c.user_id == user_id)).first()
            if row is None:
                raise NotFoundError(f"no user with id {user_id!r}")
            return self._user_from_row(conn, row)

    def find_user(self, email: str) -> User:
        with self._engine.connect() as conn:
            row = conn.execute(select(users).where(users.c.email == email.strip().lower())).first()
            if row is None:
                raise NotFoundError(f"no user with email {email!r}")
            return self._user_from_row(conn, row)

    def list_users(
        self, email: str | None = None, start: int = 1, count: int = 100
    ) -> tuple[int, list[User]]:
        """(total, page) of users, optionally only the one with ``email``."""
        where = users.c.email == email.strip().lower() if email is not None else true()
        with self._engine.connect() as conn:
            total = conn.execute(select(func.count()).select_from(users).where(where)).scalar_one()
            rows = conn.execute(
                select(users)
                .where(where)
                .order_by(users.c.email)
                .offset(max(start, 1) - 1)
                .limit(count)
            ).all()
            return int(total), [self._user_from_row(conn, row) for row in rows]

    # --- user writes ------------------------------------------------------------------

    def create_user(
        self,
        email: str,
        display_name: str | None = None,
        external_id: str | None = None,
        active: bool = True,
    ) -> User:
        email = _normal_email(email)
        now = now_micros()
        user_id = "usr_" + secrets.token_hex(8)
        try:
            with self._writes.begin() as conn:
                conn.execute(
                    insert(users).values(
                        user_id=user_id,
                        email=email,
                        display_name=display_name,
                        external_id=external_id,
                        active=active,
                        created_us=now,
                        updated_us=now,
                    )
                )
        except IntegrityError:
            raise ConflictError(f"a user with email {email!r} already exists") from None
        return self.get_user(user_id)

    def ensure_user(self, email: str) -> User:
        """The user with ``email``, created (with no grants) if missing."""
        try:
            return self.find_user(email)
        except NotFoundError:
            try:
                return self.create_user(email)
            except ConflictError:
                return self.find_user(email)

    def update_user(
        self,
        user_id: str,
        *,
        email: str | None = None,
        display_name: str | None = None,
        external_id: str | None = None,
        active: bool | None = None,
    ) -> User:
        values: dict[str, object] = {"updated_us": now_micros()}
        if email is not None:
            values["email"] = _normal_email(email)
        if display_name is not None:
            values["display_name"] = display_name
        if external_id is not None:
            values["external_id"] = external_id
        if active is not None:
            values["active"] = active
        return self._write_user(user_id, values)

    def _write_user(self, user_id: str, values: dict[str, object]) -> User:
        """Update a user's row. A changed email revokes the tokens issued to the old one:
        tokens name their user by email, and must not pass to whoever gets it next."""
        try:
            with self._writes.begin() as conn:
                before = conn.execute(
                    select(users.c.email).where(users.c.user_id == user_id)
                ).scalar_one_or_none()
                if before is None:
                    raise NotFoundError(f"no user with id {user_id!r}")
                conn.execute(update(users).where(users.c.user_id == user_id).values(**values))
                if values.get("email", before) != before:
                    _revoke_tokens(conn, before)
        except IntegrityError:
            raise ConflictError(
                f"a user with email {values.get('email')!r} already exists"
            ) from None
        self.invalidate()
        return self.get_user(user_id)

    def replace_user(
        self,
        user_id: str,
        *,
        email: str,
        display_name: str | None,
        external_id: str | None,
        active: bool,
    ) -> User:
        """Set every column of a user; unlike :meth:`update_user`, None clears (SCIM PUT)."""
        return self._write_user(
            user_id,
            {
                "email": _normal_email(email),
                "display_name": display_name,
                "external_id": external_id,
                "active": active,
                "updated_us": now_micros(),
            },
        )

    def delete_user(self, user_id: str) -> None:
        """Delete a user with its grants and memberships (its tokens stop working)."""
        self._delete_principal(PrincipalType.USER, user_id)

    def _delete_principal(self, ptype: PrincipalType, pid: str) -> None:
        table, key, member_key = (
            (users, users.c.user_id, group_members.c.user_id)
            if ptype is PrincipalType.USER
            else (groups, groups.c.group_id, group_members.c.group_id)
        )
        with self._writes.begin() as conn:
            if ptype is PrincipalType.USER:
                email = conn.execute(
                    select(users.c.email).where(users.c.user_id == pid)
                ).scalar_one_or_none()
                if email is not None:
                    _revoke_tokens(conn, email)
            done = conn.execute(delete(table).where(key == pid))
            if done.rowcount == 0:
                raise NotFoundError(f"no {ptype.value} with id {pid!r}")
            conn.execute(delete(group_members).where(member_key == pid))
            conn.execute(
                delete(grants).where(
                    grants.c.principal_type == ptype.value, grants.c.principal_id == pid
                )
            )
        self.invalidate()

    # --- grants -----------------------------------------------------------------------

    def _exists(self, conn: Connection, ptype: PrincipalType, pid: str) -> None:
        column = users.c.user_id if ptype is PrincipalType.USER else groups.c.group_id
        if conn.execute(select(column).where(column == pid)).first() is None:
            raise NotFoundError(f"no {ptype.value} with id {pid!r}")

    def grant(self, ptype: PrincipalType, pid: str, kind: GrantKind, value: str) -> None:
        """Add a grant (idempotent). A clearance replaces the previous one."""
        validate_grant(kind, value)
        with self._writes.begin() as conn:
            self._exists(conn, ptype, pid)
            if kind is GrantKind.CLEARANCE:
                conn.execute(
                    delete(grants).where(
                        grants.c.principal_type == ptype.value,
                        grants.c.principal_id == pid,
                        grants.c.kind == kind.value,
                    )
                )
            exists = conn.execute(
                select(grants.c.value).where(
                    grants.c.principal_type == ptype.value,
                    grants.c.principal_id == pid,
                    grants.c.kind == kind.value,
                    grants.c.value == value,
                )
            ).first()
            if exists is None:
                conn.execute(
                    insert(grants).values(
                        principal_type=ptype.value, principal_id=pid, kind=kind.value, value=value
                    )
                )
        self.invalidate()

    def revoke(self, ptype: PrincipalType, pid: str, kind: GrantKind, value: str) -> bool:
        """Remove a grant; return whether it existed."""
        with self._writes.begin() as conn:
            self._exists(conn, ptype, pid)
            done = conn.execute(
                delete(grants).where(
                    grants.c.principal_type == ptype.value,
                    grants.c.principal_id == pid,
                    grants.c.kind == kind.value,
                    grants.c.value == value,
                )
            )
        self.invalidate()
        return bool(done.rowcount)

    def set_grants(
        self, ptype: PrincipalType, pid: str, kind: GrantKind, values: list[str]
    ) -> None:
        """Replace every grant of one kind (SCIM replace)."""
        for value in values:
            validate_grant(kind, value)
        if kind is GrantKind.CLEARANCE and len(values) > 1:
            raise DirectoryError("a principal has at most one clearance")
        with self._writes.begin() as conn:
            self._exists(conn, ptype, pid)
            conn.execute(
                delete(grants).where(
                    grants.c.principal_type == ptype.value,
                    grants.c.principal_id == pid,
                    grants.c.kind == kind.value,
                )
            )
            for value in dict.fromkeys(values):
                conn.execute(
                    insert(grants).values(
                        principal_type=ptype.value, principal_id=pid, kind=kind.value, value=value
                    )
                )
        self.invalidate()

    # --- groups -----------------------------------------------------------------------

    def _group_from_row(self, conn: Connection, row: Row[Any]) -> Group:
        m = row._mapping
        group_id = m["group_id"]
        members = conn.execute(
            select(users.c.user_id, users.c.email)
            .join(group_members, group_members.c.user_id == users.c.user_id)
            .where(group_members.c.group_id == group_id)
            .order_by(users.c.email)
        ).all()
        return Group(
            group_id=group_id,
            name=m["name"],
            external_id=m["external_id"],
            created_us=m["created_us"],
            updated_us=m["updated_us"],
            grants=self._grants(conn, [(PrincipalType.GROUP.value, group_id)]),
            members=tuple((m[0], m[1]) for m in members),
        )

    def create_group(self, name: str, external_id: str | None = None) -> Group:
        name = name.strip()
        if not name:
            raise DirectoryError("a group needs a name")
        group_id = "grp_" + secrets.token_hex(8)
        now = now_micros()
        try:
            with self._writes.begin() as conn:
                conn.execute(
                    insert(groups).values(
                        group_id=group_id,
                        name=name,
                        external_id=external_id,
                        created_us=now,
                        updated_us=now,
                    )
                )
        except IntegrityError:
            raise ConflictError(f"a group named {name!r} already exists") from None
        return self.get_group(group_id)

    def get_group(self, group_id: str) -> Group:
        with self._engine.connect() as conn:
            row = conn.execute(select(groups).where(groups.c.group_id == group_id)).first()
            if row is None:
                raise NotFoundError(f"no group with id {group_id!r}")
            return self._group_from_row(conn, row)

    def find_group(self, name: str) -> Group:
        with self._engine.connect() as conn:
            row = conn.execute(select(groups).where(groups.c.name == name.strip())).first()
            if row is None:
                raise NotFoundError(f"no group named {name!r}")
            return self._group_from_row(conn, row)

    def list_groups(
        self, name: str | None = None, start: int = 1, count: int = 100
    ) -> tuple[int, list[Group]]:
        where = groups.c.name == name if name is not None else true()
        with self._engine.connect() as conn:
            total = conn.execute(select(func.count()).select_from(groups).where(where)).scalar_one()
            rows = conn.execute(
                select(groups)
                .where(where)
                .order_by(groups.c.name)
                .offset(max(start, 1) - 1)
                .limit(count)
            ).all()
            return int(total), [self._group_from_row(conn, row) for row in rows]

    def replace_group(self, group_id: str, *, name: str, external_id: str | None) -> Group:
        """Set a group's name and external id; None clears the external id (SCIM PUT)."""
        name = name.strip()
        if not name:
            raise DirectoryError("a group needs a name")
        try:
            with self._writes.begin() as conn:
                done = conn.execute(
                    update(groups)
                    .where(groups.c.group_id == group_id)
                    .values(name=name, external_id=external_id, updated_us=now_micros())
                )
                if done.rowcount == 0:
                    raise NotFoundError(f"no group with id {group_id!r}")
        except IntegrityError:
            raise ConflictError(f"a group named {name!r} already exists") from None
        self.invalidate()
        return self.get_group(group_id)

    def delete_group(self, group_id: str) -> None:
        """Delete a group; its members lose the grants they had through it."""
        self._delete_principal(PrincipalType.GROUP, group_id)

    def set_members(self, group_id: str, user_ids: list[str], *, replace: bool) -> None:
        """Add members, or replace the member list when ``replace``."""
        with self._writes.begin() as conn:
            self._exists(conn, PrincipalType.GROUP, group_id)
            for uid in user_ids:
                self._exists(conn, PrincipalType.USER, uid)
            if replace:
                conn.execute(delete(group_members).where(group_members.c.group_id == group_id))
                current: set[str] = set()
            else:
                current = {
                    r[0]
                    for r in conn.execute(
                        select(group_members.c.user_id).where(group_members.c.group_id == group_id)
                    )
                }
            for uid in dict.fromkeys(user_ids):
                if uid not in current:
                    conn.execute(insert(group_members).values(group_id=group_id, user_id=uid))
        self.invalidate()
