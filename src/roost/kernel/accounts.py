"""Users and groups: names or numbers to ids, supplementary groups and a login environment.

One resolver, one failure: a name that the system does not know raises
UnknownAccount with a sentence that names it. A number is taken as it is even
with no entry behind it (a container image often has none), as chown(1) does.
The configuration checker, the spawner of services and the control socket's
group all ask here, so a user that is missing reads the same everywhere.
"""

from __future__ import annotations

import os
import pwd

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping


class UnknownAccount(ValueError):
    """A user or group name the system does not know."""


class Account:
    """Whom a process runs as: ids, supplementary groups, and the login environment."""

    __slots__ = ("env", "gid", "groups", "uid")

    def __init__(self, uid: int | None, gid: int | None, groups: list[int] | None,
                 env: Mapping[str, str]):
        self.uid = uid
        self.gid = gid
        self.groups = groups
        self.env = dict(env)


def _numeric(spec: str) -> bool:
    return spec.isascii() and spec.isdigit()


def _passwd(user: str) -> pwd.struct_passwd | None:
    """The entry of a user name or number (None for a number with no entry)."""
    try:
        return pwd.getpwuid(int(user)) if _numeric(user) else pwd.getpwnam(user)
    except KeyError:
        if _numeric(user):
            return None
        raise UnknownAccount(f"no such user: {user}") from None


def group_id(group: str) -> int:
    """The id of a group name or number."""
    if _numeric(group):
        return int(group)
    import grp  # noqa: PLC0415 - lazy (memory): only services that name a group pay for it

    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise UnknownAccount(f"no such group: {group}") from None


def user_id(user: str | None) -> int:
    """The uid a user name or number stands for; this process's own for None."""
    if user is None:
        return os.getuid()
    entry = _passwd(user)
    return entry.pw_uid if entry is not None else int(user)


def resolve(user: str | None, group: str | None) -> Account:
    """Everything a child needs to become `user` (and `group`): None for "as roost is"."""
    uid = gid = None
    groups: list[int] | None = None
    env: dict[str, str] = {}
    if user is not None:
        entry = _passwd(user)
        if entry is not None:
            uid, gid = entry.pw_uid, entry.pw_gid
            groups = os.getgrouplist(entry.pw_name, entry.pw_gid)
            env = {"USER": entry.pw_name, "LOGNAME": entry.pw_name, "HOME": entry.pw_dir,
                   "SHELL": entry.pw_shell or "/bin/sh"}
        else:
            uid = gid = int(user)
            groups = []
    if group is not None:
        gid = group_id(group)
        groups = [gid] if groups is None else groups
    return Account(uid, gid, groups, env)
