"""The control commands that stream: `log` with follow, and `events`.

Each replies at once with what is known now, then sends every new line or change of
state as an event on the same connection until the client goes (conn.on_close).
"""

from __future__ import annotations

import time

from roost.control import protocol
from roost.control.request import LATER, MAX_NUMBER

TYPE_CHECKING = False
if TYPE_CHECKING:
    from roost.control.request import Request, Serving
    from roost.supervise.runtime import Runtime


def log(d: Serving, req: Request) -> object:
    """The last lines of each service's output (of all, by default), interleaved by time.

    With follow, every new line after them.
    """
    host = d.serving(req)
    names = req.names(host, required=False) or list(host.supervisor.services)
    count = int(req.number("lines", 20))
    since, until = req.number("since", 0), req.number("until", 2**40)
    logs = [host.supervisor.services[name].log for name in names]
    lines = []
    for name, service_log in zip(names, logs, strict=True):
        # The last `count` of each service within the window: a quiet service's lines are
        # not pushed out by a chatty one's.
        inside = [line for line in service_log.read_tail(
            count if "since" not in req.args else MAX_NUMBER) if since <= line[0] <= until]
        lines += [{"service": name, "time": when, "stream": stream, "line": text}
                  for when, stream, text in (inside[-count:] if count else [])]
    lines.sort(key=lambda r: r["time"])  # type: ignore[arg-type, return-value]
    req.reply(lines)
    if not req.args.get("follow"):
        return LATER
    conn = req.conn
    conn.streaming = True

    def follower(name: str, when: float, stream: str, text: str) -> None:
        conn.send(protocol.event(req.ident, {"service": name, "time": when, "stream": stream,
                                             "line": text}))

    for service_log in logs:
        service_log.follow(follower)

    def unfollow() -> None:
        for service_log in logs:
            service_log.unfollow(follower)

    conn.on_close.append(unfollow)
    return LATER


def events(d: Serving, req: Request) -> object:
    """The services' states now, then every state change as it happens, until the client goes."""
    host = d.serving(req)
    names = set(req.names(host, required=False))
    supervisor = host.supervisor
    req.reply([_event_of(rt) for name, rt in supervisor.services.items()
               if not names or name in names])
    conn = req.conn
    conn.streaming = True

    def watcher(rt: Runtime) -> None:
        if not names or rt.name in names:
            conn.send(protocol.event(req.ident, _event_of(rt)))

    def unwatch() -> None:
        if watcher in supervisor.watchers:
            supervisor.watchers.remove(watcher)

    supervisor.watchers.append(watcher)
    conn.on_close.append(unwatch)
    return LATER


def _event_of(rt: Runtime) -> dict[str, object]:
    m = rt.machine
    return {"service": rt.name, "time": time.time(), "state": m.state, "pid": m.pid,
            "reason": m.reason, "restarts": m.restarts, "want": m.want}
