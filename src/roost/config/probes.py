"""Checking how roost looks at a service: `ready` (every protocol) and the `health` table.

Both name addresses roost connects to from its reactor, where a name lookup would
block: a host is a numeric address (IPv6 in brackets) or `localhost`, which is
127.0.0.1. Each checker returns the value converted or raises ValueError with the
reason; load reports it with the file, line and key.
"""

from __future__ import annotations

import socket

from roost.config.check import MAX_READY_FD, MAX_SECONDS, SHOWN, shown
from roost.core.model import HEALTH_KINDS, HealthCheck

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

MAX_RETRIES = 1000
# A probe more often than this is a busy loop in PID 1, not a health check.
MIN_INTERVAL = 0.1
MAX_PATH = 4096  # PATH_MAX: a longer file: or URL path is no path at all
MAX_VAR = 128
# Variables roost sets itself, or that the service's own start depends on.
RESERVED_VARS = frozenset({"NOTIFY_SOCKET", "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES",
                           "WATCHDOG_USEC", "WATCHDOG_PID", "PATH", "HOME", "USER", "LOGNAME",
                           "SHELL"})
FORMS = '"exec", "fd:N", "pipevar:VAR", "file:PATH" or "tcp:HOST:PORT"'


def address(text: str) -> tuple[str, int]:
    """`HOST:PORT` (`[V6]:PORT`) as a numeric host and a port from 1 to 65535."""
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise ValueError(f"expected HOST:PORT, got {shown(text)}")
    if not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        raise ValueError(f"the port must be from 1 to 65535, got {shown(port)}")
    if host.startswith("[") and host.endswith("]"):
        family, host = socket.AF_INET6, host[1:-1]
    elif host == "localhost":
        family, host = socket.AF_INET, "127.0.0.1"
    else:
        family = socket.AF_INET
    try:
        socket.inet_pton(family, host)
    except (OSError, ValueError):
        raise ValueError(f"expected a numeric address (IPv6 in brackets) or localhost, got "
                         f"{shown(host)}: a name would need a lookup, which blocks") from None
    return host, int(port)


def ready(value: Any) -> str:
    """The `ready` key: how a `simple` service says it is ready."""
    if value == "exec":
        return "exec"
    if not isinstance(value, str):
        raise ValueError(f"expected {FORMS}, got {shown(value)}")
    kind, _, rest = value.partition(":")
    if kind == "fd" and rest.isascii() and rest.isdigit():
        if int(rest) < 3:
            raise ValueError("the notification fd must be 3 or more (0-2 are stdio)")
        if int(rest) > MAX_READY_FD:
            raise ValueError(f"the notification fd must be at most {MAX_READY_FD} "
                             "(a service's descriptors end below 1024)")
        return f"fd:{int(rest)}"
    if kind == "pipevar":
        if not (rest.isascii() and (rest[:1].isalpha() or rest[:1] == "_")
                and all(c.isalnum() or c == "_" for c in rest) and len(rest) <= MAX_VAR):
            raise ValueError(f"expected a variable name after pipevar:, got {shown(rest)}")
        if rest in RESERVED_VARS:
            raise ValueError(f"${rest} is not roost's to set for a readiness pipe")
        return value
    if kind == "file":
        if not rest.startswith("/") or len(rest) > MAX_PATH:
            raise ValueError(f"expected an absolute path after file:, got {shown(rest)}")
        return value
    if kind == "tcp":
        host, port = address(rest)
        return f"tcp:[{host}]:{port}" if ":" in host else f"tcp:{host}:{port}"
    raise ValueError(f"expected {FORMS}, got {shown(value)}")


def _duration(key: str, value: Any, low: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{key}: expected a number of seconds, got {shown(value)}")
    if not low <= value <= MAX_SECONDS:  # also refuses NaN
        raise ValueError(f"{key}: must be from {low:g} to {MAX_SECONDS} seconds, got "
                         f"{shown(value)}")
    return float(value)


def _url(text: str) -> tuple[str, int, str]:
    if not text.startswith("http://"):
        raise ValueError(f"http: expected a URL like \"http://127.0.0.1:8080/healthz\", got "
                         f"{shown(text)} (plain http only)")
    where, slash, path = text[len("http://"):].partition("/")
    path = slash + path or "/"
    if len(path) > MAX_PATH or not all(33 <= ord(c) < 127 for c in path):
        raise ValueError(f"http: the path must be printable ASCII without spaces, at most "
                         f"{MAX_PATH} characters, got {shown(path)}")
    if ":" not in where.rpartition("]")[2]:
        where += ":80"
    try:
        host, port = address(where)
    except ValueError as exc:
        raise ValueError(f"http: {exc}") from None
    return host, port, path


def health(value: Any) -> HealthCheck:
    """The `health` table: one of command, tcp or http, and how often, how long, how many."""
    if not isinstance(value, dict):
        raise ValueError(f"expected a table like {{ tcp = \"127.0.0.1:80\" }}, got "
                         f"{shown(value)}")
    kinds = [k for k in HEALTH_KINDS if k in value]
    if len(kinds) != 1:
        raise ValueError("expected exactly one of command, tcp or http" +
                         (f", got {' and '.join(kinds)}" if kinds else ""))
    known = {*HEALTH_KINDS, "interval", "timeout", "retries", "start_period"}
    for key in value:
        if key not in known:
            raise ValueError(f"unknown key {shown(key) if len(key) > SHOWN else repr(key)} "
                             f"(expected {', '.join(sorted(known))})")
    kind = kinds[0]
    check = HealthCheck(kind)
    target = value[kind]
    if kind == "command":
        if not (isinstance(target, list) and target
                and all(isinstance(a, str) for a in target) and target[0]):
            raise ValueError(f"command: expected a non-empty list of strings, got "
                             f"{shown(target)}")
        check.argv = list(target)
    elif not isinstance(target, str):
        raise ValueError(f"{kind}: expected a string, got {shown(target)}")
    elif kind == "tcp":
        try:
            check.host, check.port = address(target)
        except ValueError as exc:
            raise ValueError(f"tcp: {exc}") from None
    else:
        check.host, check.port, check.path = _url(target)
    check.interval = _duration("interval", value.get("interval", check.interval), MIN_INTERVAL)
    check.timeout = _duration("timeout", value.get("timeout", check.timeout), MIN_INTERVAL)
    check.start_period = _duration("start_period", value.get("start_period", 0.0), 0.0)
    retries = value.get("retries", check.retries)
    if isinstance(retries, bool) or not isinstance(retries, int) or \
            not 1 <= retries <= MAX_RETRIES:
        raise ValueError(f"retries: expected an integer from 1 to {MAX_RETRIES}, got "
                         f"{shown(retries)}")
    check.retries = retries
    return check
