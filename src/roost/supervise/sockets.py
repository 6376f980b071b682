"""A service's listening sockets: opened before its first start, held across its restarts.

The policy of socket activation; the syscalls are kernel/listen.py's. Opened at the
first start that needs them, so a bad address fails that start (and is retried as the
restart policy says) instead of roost itself. Kept while the configuration names the
same sockets: a reload that changes them closes the old ones, and the next start opens
the new. A file-system socket that is gone from its path (its directory removed at a
stop) is opened again. Closed when the service leaves the configuration; roost's exit
closes the rest.
"""

from __future__ import annotations

import os

from roost.kernel import accounts, listen
from roost.kernel.ready import Refused
from roost.supervise.runtime import Listeners

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from roost.supervise.runtime import Runtime


def held(rt: Runtime) -> list[tuple[str, int]]:
    """(name, descriptor) of the service's sockets, opened now if need be; OSError says why not."""
    spec = rt.config.sockets
    current = rt.listeners
    if current is not None:
        if current.spec == spec and all(
                listen.still_there(entry[1], fd)
                for entry, (_n, fd) in zip(spec, current.fds, strict=True)
                if entry[0] in ("unix", "fifo")):
            return current.fds
        current.close()
        rt.listeners = None
    if not spec:
        return []
    opened: list[tuple[str, int]] = []
    try:
        for entry in spec:
            opened.append((entry[3] or rt.name, _open(entry)))
    except (OSError, ValueError, Refused) as exc:
        for _name, fd in opened:
            os.close(fd)
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise OSError(f"cannot listen on {shown(entry)}: {reason}") from None
    rt.listeners = Listeners(spec, opened)
    return opened


def close(rt: Runtime) -> None:
    """The service left the configuration: its sockets go with it."""
    if rt.listeners is not None:
        rt.listeners.close()
        rt.listeners = None


def shown(entry: list[Any]) -> str:
    """A socket as the configuration writes it: "tcp:127.0.0.1:8080"."""
    kind, host, port = entry[:3]
    if kind in ("unix", "fifo"):
        return f"{kind}:{host}"
    return f"{kind}:[{host}]:{port}" if kind.endswith("6") else f"{kind}:{host}:{port}"


def _open(entry: list[Any]) -> int:
    kind, host, port, _name, mode, user, group, backlog = entry
    if kind in ("unix", "fifo") and not host.startswith("@"):
        account = accounts.resolve(user, group)  # a user's own group unless one is named
        uid = os.geteuid() if account.uid is None else account.uid
        gid = os.getegid() if account.gid is None else account.gid
        if kind == "fifo":
            return listen.open_fifo(host, mode, uid, gid)
        return listen.open_unix(host, mode, uid, gid, backlog)
    if kind == "unix":
        return listen.open_unix(host, mode, -1, -1, backlog)
    return listen.open_inet(kind, host, port, backlog)
