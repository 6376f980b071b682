"""An in-process client of roost's control protocol (newline-delimited JSON over SOCK_STREAM)."""

from __future__ import annotations

import itertools
import json
import socket
from typing import Any

_ids = itertools.count(1)


class ControlError(Exception):
    """roost answered with ok=false, or not in the protocol's shape."""


def sockaddr(addr: str) -> str:
    """`@name` is an abstract socket (leading NUL); anything else is a path."""
    return "\0" + addr[1:] if addr.startswith("@") else addr


def request(addr: str, cmd: str, timeout: float = 5.0, **args: Any) -> Any:
    """Send one command on a new connection and return its `result`."""
    msg_id = next(_ids)
    msg: dict[str, Any] = {"v": 1, "id": msg_id, "cmd": cmd}
    if args:
        msg["args"] = args
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(sockaddr(addr))
        s.sendall(json.dumps(msg).encode() + b"\n")
        buf = b""
        while b"\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                raise ControlError(f"connection closed after {len(buf)} bytes")
            buf += chunk
    reply = json.loads(buf.split(b"\n", 1)[0])
    if not isinstance(reply, dict) or reply.get("id") != msg_id:
        raise ControlError(f"unexpected reply: {reply!r}")
    if not reply.get("ok"):
        raise ControlError(f"roost refused {cmd}: {reply.get('error', reply)!r}")
    return reply.get("result")


def status(addr: str, timeout: float = 5.0) -> list[dict[str, Any]]:
    """roost's `status`: a list of services with at least name, state, pid, restarts."""
    result = request(addr, "status", timeout)
    if not isinstance(result, list):
        raise ControlError(f"status result is not a list: {result!r}")
    return result
