"""Checking `sockets`: what roost listens on for a service before its first start.

    sockets = ["tcp:127.0.0.1:8080", "tcp6:[::1]:8080", "udp:0.0.0.0:5353",
               "unix:/run/app.sock", "unix:@abstract", "fifo:/run/app.fifo",
               { listen = "unix:/run/app/ctl.sock", name = "control", mode = "0660",
                 user = "app", group = "app", backlog = 128 }]

Each becomes [kind, address, port, name, mode, user, group, backlog]: a list, as the
configuration reader's JSON gives it back. kernel/listen.py opens them; the service
gets them from fd 3 up with LISTEN_FDS, LISTEN_PID and LISTEN_FDNAMES.
"""

from __future__ import annotations

import socket

from roost.config.check import MAX_UNIX_PATH, SERVICE_KEYS, shown

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

KINDS = ("tcp", "tcp6", "udp", "udp6", "unix", "fifo")
# systemd's SocketMode= default; the backlog is the kernel's SOMAXCONN.
DEFAULT_MODE = 0o666
DEFAULT_BACKLOG = 4096
MAX_BACKLOG = 65535
MAX_SOCKETS = 100
NAME_MAX = 255  # systemd's longest descriptor name
_TABLE_KEYS = ("listen", "name", "mode", "user", "group", "backlog")


def sockets(value: Any) -> list[list[Any]]:
    """The `sockets` key: a list of "KIND:ADDRESS" strings or tables with `listen`."""
    if not isinstance(value, list) or not value:
        raise ValueError(f"expected a list like [\"tcp:127.0.0.1:8080\"], got {shown(value)}")
    if len(value) > MAX_SOCKETS:
        raise ValueError(f"at most {MAX_SOCKETS} sockets, got {len(value)}")
    result = []
    seen = set()
    for entry in value:
        spec = _entry(entry)
        kind, host, port = spec[:3]
        # A path once, whatever kind; an address and port once per protocol.
        where = ("path", host, 0) if kind in ("unix", "fifo") else (kind[:3], host, port)
        if where in seen:
            raise ValueError(f"{_listen_of(entry)}: listed twice")
        seen.add(where)
        result.append(spec)
    return result


def _listen_of(entry: Any) -> str:
    return shown(entry.get("listen") if isinstance(entry, dict) else entry)


def _entry(entry: Any) -> list[Any]:
    table: dict[str, Any] = {}
    if isinstance(entry, dict):
        unknown = [k for k in entry if k not in _TABLE_KEYS]
        if unknown:
            raise ValueError(f"{shown(unknown[0])}: not a socket key (one of "
                             f"{', '.join(_TABLE_KEYS)})")
        if "listen" not in entry:
            raise ValueError("a socket table needs `listen`, like \"tcp:127.0.0.1:8080\"")
        table = entry
        entry = entry["listen"]
    if not isinstance(entry, str) or ":" not in entry:
        raise ValueError(f"expected \"KIND:ADDRESS\" (KIND one of {', '.join(KINDS)}), "
                         f"got {shown(entry)}")
    kind, _, address = entry.partition(":")
    if kind not in KINDS:
        raise ValueError(f"{shown(entry)}: {shown(kind)} is not one of {', '.join(KINDS)}")
    if kind in ("unix", "fifo"):
        host, port = _path(kind, address, entry), 0
    else:
        host, port = _inet(kind, address, entry)
    name = table.get("name", "")
    if name != "" and not (isinstance(name, str) and 0 < len(name) <= NAME_MAX
                           and name.isascii() and name.isprintable() and ":" not in name):
        raise ValueError(f"name: 1 to {NAME_MAX} printable ASCII characters without ':', "
                         f"got {shown(name)}")
    mode = _mode(table.get("mode"))
    user = SERVICE_KEYS["user"](table["user"]) if "user" in table else None
    group = SERVICE_KEYS["group"](table["group"]) if "group" in table else None
    if (mode is not None or user is not None or group is not None) and \
            (kind not in ("unix", "fifo") or address.startswith("@")):
        raise ValueError(f"{shown(entry)}: mode, user and group are a file's: unix or fifo "
                         "sockets with a path only")
    backlog = table.get("backlog", DEFAULT_BACKLOG)
    if isinstance(backlog, bool) or not isinstance(backlog, int) or \
            not 1 <= backlog <= MAX_BACKLOG:
        raise ValueError(f"backlog: expected 1 to {MAX_BACKLOG}, got {shown(backlog)}")
    return [kind, host, port, name, DEFAULT_MODE if mode is None else mode, user, group,
            backlog]


def _path(kind: str, address: str, entry: str) -> str:
    if kind == "unix" and address.startswith("@") and len(address) > 1:
        if len(address.encode()) > MAX_UNIX_PATH or "\0" in address:
            raise ValueError(f"{shown(entry)}: an abstract name of at most {MAX_UNIX_PATH} bytes")
        return address
    if not address.startswith("/") or "\0" in address or address.endswith("/"):
        raise ValueError(f"{shown(entry)}: expected an absolute path"
                         + (" or @name" if kind == "unix" else ""))
    if kind == "unix" and len(address.encode()) > MAX_UNIX_PATH:
        raise ValueError(f"{shown(entry)}: a socket's path is at most {MAX_UNIX_PATH} bytes")
    return address


def _inet(kind: str, address: str, entry: str) -> tuple[str, int]:
    six = kind.endswith("6")
    if six:
        if not address.startswith("[") or "]:" not in address:
            raise ValueError(f"{shown(entry)}: expected [ADDRESS]:PORT, like [::1]:8080")
        host, _, port_text = address[1:].partition("]:")
    else:
        host, _, port_text = address.rpartition(":")
        host = "127.0.0.1" if host == "localhost" else host  # as `ready = "tcp:..."` reads it
    try:
        socket.inet_pton(socket.AF_INET6 if six else socket.AF_INET, host)
    except OSError:
        raise ValueError(f"{shown(entry)}: {shown(host)} is not an IPv{6 if six else 4} "
                         "address (roost resolves no names)") from None
    if not (port_text.isascii() and port_text.isdigit() and 1 <= int(port_text) <= 65535):
        raise ValueError(f"{shown(entry)}: the port must be 1 to 65535")
    return host, int(port_text)


def _mode(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, str) and value and len(value) <= 4 and \
            all(c in "01234567" for c in value) and int(value, 8) <= 0o777:
        return int(value, 8)
    raise ValueError(f"mode: expected an octal mode like \"0660\", got {shown(value)}")
