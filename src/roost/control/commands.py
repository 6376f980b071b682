"""What each control command does. Authorization happened before: see server.py.

A command asks its host (the roost that serves it, through the narrow `Host`
interface below) and returns its result; the dispatcher encodes every reply.
A command that answers later (a start that waits until its services settled, a
log that follows) returns LATER and replies through its Request.
"""

from __future__ import annotations

import os

from roost import __version__
from roost.config.errors import ConfigInvalid
from roost.control import protocol, streams
from roost.control.protocol import ProtocolError
from roost.control.request import LATER, Request, check_arguments
from roost.core import graph, sigs
from roost.kernel import console, proc

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from roost.control.request import Host
    from roost.control.server import Connection
    from roost.supervise.supervisor import Supervisor

    # Queue a power request (kind, who asked, force); return the acknowledgement.
    Power = Callable[[str, str, bool], dict[str, object]]
    Handler = Callable[["Dispatcher", "Request"], object]

DEFAULT_WAIT = 90.0  # seconds a waiting start/stop/restart may take before the reply
POWER = ("poweroff", "reboot", "halt", "kexec")

class Dispatcher:
    """Runs authorized commands against a host; power requests go to `power`, if any.

    Until it has a host (`roost init` before its supervisor exists) it answers
    ping and power requests, and says it is still booting to the rest.
    """

    def __init__(self, host: Host | None, power: Power | None = None,
                 directory: str = ""):
        self.host = host
        self.power = power
        self.directory = directory

    def __call__(self, conn: Connection, ident: object, cmd: str,
                 args: dict[str, object]) -> None:
        """Run one command; ProtocolError from it becomes the server's error reply."""
        entry = COMMANDS.get(cmd)
        if entry is None:
            raise ProtocolError(protocol.UNKNOWN_COMMAND, f"unknown command {cmd!r}")
        handler, takes = entry
        check_arguments(takes, args)
        request = Request(conn, ident, cmd, args)
        result = handler(self, request)
        if result is not LATER:
            request.reply(result)
        elif not request.answered:
            # The connection is not idle while a reply is owed (docs/control.md, Limits).
            request.later = True
            conn.awaiting += 1

    def serving(self, req: Request) -> Host:
        """The host, or a refusal of `req` while there is none yet."""
        if self.host is None:
            raise ProtocolError(protocol.FAILED,
                                f"{req.cmd}: roost is still booting; try again shortly")
        return self.host


def ping(d: Dispatcher, req: Request) -> object:
    """Say who answers: version, pid, and the protocol spoken."""
    reply: dict[str, object] = {"roost": __version__, "protocol": protocol.VERSION,
                                "pid": os.getpid()}
    if d.host is None:
        return {**reply, "pid1": True, "booting": True, "directory": d.directory}
    return {**reply, "pid1": d.host.pid1, "directory": d.host.directory}


def status(d: Dispatcher, req: Request) -> object:
    """Every service's state (or the named ones')."""
    host = d.serving(req)
    return host.supervisor.status(req.names(host, required=False, set_aside=True) or None)


def _change(verb: str, act: Callable[[Supervisor, list[str]], None], down: bool) -> Handler:
    def handle(d: Dispatcher, req: Request) -> object:
        host = d.serving(req)
        names = req.names(host)
        if host.stopping:
            raise ProtocolError(protocol.FAILED, "roost is shutting down")
        _audit(req, f"{verb} {' '.join(names)}")
        supervisor = host.supervisor
        # Judged before the request changes what is wanted: a restart takes along only
        # what is wanted now.
        involved = touched(supervisor, verb, names)
        act(supervisor, names)
        if req.args.get("wait", True) is False:
            return supervisor.status(involved)
        order = supervisor.order
        settled = order.settled_down if down else order.settled_up
        _reply_when(host, req, lambda: settled(involved), involved,
                    req.number("timeout", DEFAULT_WAIT))
        return LATER

    handle.__doc__ = f"{verb.capitalize()} the named services; reply once all it touched settled."
    return handle


def touched(supervisor: Supervisor, verb: str, names: list[str]) -> list[str]:
    """Every service a start, stop or restart of `names` moves: the named first, then the rest.

    The rules are core/order.py's: a start pulls in what the names require; a stop
    takes along what requires them; a restart, what requires them and is wanted.
    """
    order = supervisor.order
    if verb == "start":
        requires = {n: m.config.requires for n, m in order.machines.items()}
        found = graph.closure(names, requires)
    else:
        found = set(names)
        for name in names:
            found |= {n for n in order.requirers(name)
                      if verb == "stop" or order.machines[n].want}
    return names + [n for n in supervisor.services if n in found and n not in names]


def _reply_when(host: Host, req: Request, settled: Callable[[], bool], names: list[str],
                timeout: float) -> None:
    """Reply with the services' status once `settled()` holds, or fail at the timeout."""
    done = [False]

    def records() -> list[dict[str, object]]:
        # A reload meanwhile may have removed one.
        present = [n for n in names if n in host.supervisor.services]
        return host.supervisor.status(present) if present else []

    def reply() -> None:
        if not done[0]:
            done[0] = True
            timer.cancel()
            req.reply(records())

    def expire() -> None:
        if not done[0]:
            done[0] = True
            states = ", ".join(f"{r['name']} {r['state']}" for r in records())
            req.fail(protocol.TIMEOUT, f"not settled within {timeout:g}s (still in progress; "
                     f"now: {states})")

    timer = host.loop.call_later(timeout, expire)
    host.supervisor.when(lambda: done[0] or settled(), reply)


def _audit(req: Request, what: str) -> None:
    """Log a state-changing request with who made it, on roost's console."""
    console.say(f"{what} by {req.conn.peer.describe()}")


def signal(d: Dispatcher, req: Request) -> object:
    """Send a signal to a service's main process."""
    host = d.serving(req)
    names = req.names(host)
    spec = req.args.get("signal")
    if spec is None:
        raise ProtocolError(protocol.BAD_REQUEST, "name a \"signal\"")
    try:
        signum = sigs.number(str(spec))
    except ValueError as exc:
        raise ProtocolError(protocol.BAD_REQUEST, str(exc)) from None
    if signum == 0:
        raise ProtocolError(protocol.BAD_REQUEST, "signal 0 sends nothing: name a signal")
    _audit(req, f"signal {sigs.name(signum)} to {' '.join(names)}")
    missing = [n for n in names if not host.supervisor.send_signal(n, signum)]
    if missing:
        raise ProtocolError(protocol.FAILED, "not running: " + ", ".join(missing))
    return {"signal": sigs.name(signum), "services": names}


def tree(d: Dispatcher, req: Request) -> object:
    """Every process of every service (or of the named ones), and the orphans roost adopted."""
    host = d.serving(req)
    explicit = req.names(host, required=False)
    supervisor = host.supervisor
    tracker = supervisor.tracker
    table = proc.snapshot()
    result = []
    for name in explicit or list(supervisor.services):
        members = {st.pid: st for st in tracker.members(name, table)}
        main = supervisor.services[name].machine.pid
        processes = []
        # Parents before their children, each with its depth in the service's tree.
        children: dict[int, list[int]] = {}
        for st in members.values():
            children.setdefault(st.ppid if st.ppid in members else 0, []).append(st.pid)
        stack = [(pid, 0) for pid in sorted(children.get(0, []), reverse=True)]
        while stack:
            pid, depth = stack.pop()
            st = members[pid]
            processes.append({"pid": pid, "ppid": st.ppid, "depth": depth, "main": pid == main,
                              "command": proc.cmdline(pid) or f"[{st.comm}]"})
            stack.extend((c, depth + 1) for c in sorted(children.get(pid, []), reverse=True))
        result.append({"service": name, "argv": supervisor.services[name].config.argv,
                       "tracking": tracker.means_for(name),
                       "cgroup": tracker.cgroup_of(name), "main": main,
                       "processes": processes})
    orphans = [o for o in tracker.orphans(table) if not explicit or o["service"] in explicit]
    return {"services": result, "orphans": orphans}


def reload(d: Dispatcher, req: Request) -> object:
    """Re-read the configuration and apply it only if all of it is valid; or reload services."""
    host = d.serving(req)
    if host.stopping:
        raise ProtocolError(protocol.FAILED, "roost is shutting down")
    if req.args.get("services"):
        return _reload_services(host, req)
    who = req.conn.peer.describe()
    try:
        summary = host.reload()
    except ConfigInvalid as exc:
        console.say(f"reload by {who} refused: the configuration is invalid")
        raise ProtocolError(protocol.INVALID_CONFIG,
                            "the new configuration is invalid; nothing changed:\n"
                            + "\n".join(str(e) for e in exc.errors)) from None
    console.say(f"reloaded by {who}: {protocol.describe_reload(summary)}")
    return summary


def _reload_services(host: Host, req: Request) -> object:
    """Each service's exec_reload (or reload_signal); reply once every command ended."""
    names = req.names(host)
    supervisor = host.supervisor
    _audit(req, f"reload {' '.join(names)}")
    refused = [why for name in names if (why := supervisor.reload_service(name)) is not None]
    if refused:
        raise ProtocolError(protocol.FAILED, "; ".join(refused))

    def reloaded() -> bool:
        return all(n not in supervisor.services or supervisor.services[n].command is None
                   for n in names)

    def reply() -> None:
        records = supervisor.status([n for n in names if n in supervisor.services])
        failed = [f"{r['name']}: {r['reason']}" for r in records
                  if str(r["reason"]).startswith("reload failed") or r["state"] != "up"]
        if failed:
            req.fail(protocol.FAILED, "; ".join(failed))
        else:
            req.reply(records)

    supervisor.when(reloaded, reply)
    return LATER


def shutdown(d: Dispatcher, req: Request) -> object:
    """Stop every service in order, then exit."""
    host = d.serving(req)
    req.reply({"shutting_down": True})
    host.shutdown(f"shutdown requested by {req.conn.peer.describe()}")
    return LATER


def _power(kind: str) -> Handler:
    def handle(d: Dispatcher, req: Request) -> object:
        if d.power is None:
            raise ProtocolError(protocol.FAILED, f"{kind}: this roost is not the system's init "
                                "(it supervises as `roost up`; use `roost shutdown`)")
        return d.power(kind, req.conn.peer.describe(), req.args.get("force") is True)

    handle.__doc__ = f"Ask init to {kind}: acknowledged at once, carried out after the reply."
    return handle


_CHANGE = ("services", "wait", "timeout")

# Each command, and the arguments it takes (see ARGUMENTS).
COMMANDS: dict[str, tuple[Handler, tuple[str, ...]]] = {
    "ping": (ping, ()),
    "status": (status, ("services",)),
    "start": (_change("start", lambda s, names: s.start(names), down=False), _CHANGE),
    "stop": (_change("stop", lambda s, names: s.stop(names), down=True), _CHANGE),
    "restart": (_change("restart", lambda s, names: s.restart(names), down=False), _CHANGE),
    "signal": (signal, ("services", "signal")),
    "log": (streams.log, ("services", "lines", "follow", "since", "until")),
    "events": (streams.events, ("services",)),
    "tree": (tree, ("services",)),
    "reload": (reload, ("services",)),
    "shutdown": (shutdown, ()),
    **{kind: (_power(kind), ("force",)) for kind in POWER},
}
