"""What each control command does. Authorization happened before: see server.py."""

from __future__ import annotations

import os

from roost import __version__, proc, service, sigs
from roost.config.load import ConfigInvalid
from roost.control import protocol
from roost.control.protocol import ProtocolError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from roost.control.server import Connection
    from roost.manager import Manager

DEFAULT_WAIT = 90.0  # seconds a waiting start/stop/restart may take before the reply


def _names(manager: Manager, args: dict[str, object], required: bool = True) -> list[str]:
    names = args.get("services", [])
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ProtocolError(protocol.BAD_REQUEST, "\"services\" must be a list of names")
    if required and not names:
        raise ProtocolError(protocol.BAD_REQUEST, "name at least one service")
    unknown = [n for n in names if n not in manager.supervisor.services]
    if unknown:
        raise ProtocolError(protocol.NO_SUCH_SERVICE, "no such service: " + ", ".join(unknown))
    return list(names)


# The largest number a request may give: a timer further away than epoll can wait
# (about 24.8 days) would end the reactor, and JSON lets a client send Infinity.
MAX_NUMBER = 1_000_000


def _number(args: dict[str, object], key: str, default: float) -> float:
    value = args.get(key, default)
    if (isinstance(value, bool) or not isinstance(value, int | float)
            or not 0 <= value <= MAX_NUMBER):
        raise ProtocolError(protocol.BAD_REQUEST,
                            f"\"{key}\" must be a number from 0 to {MAX_NUMBER}")
    return float(value)


def ping(manager: Manager, conn: Connection, ident: object, args: dict[str, object]) -> None:
    """Say who answers: version, pid, and the protocol spoken."""
    conn.send(protocol.ok(ident, {"roost": __version__, "protocol": protocol.VERSION,
                                  "pid": os.getpid(), "pid1": manager.pid1,
                                  "directory": manager.config.directory}))


def status(manager: Manager, conn: Connection, ident: object, args: dict[str, object]) -> None:
    """Every service's state (or the named ones')."""
    names = _names(manager, args, required=False)
    conn.send(protocol.ok(ident, manager.supervisor.status(names or None)))


def _settled_for_start(manager: Manager, names: list[str]) -> bool:
    for name in names:
        m = manager.supervisor.services[name].machine
        # Not wanted (yet): a restart still waiting for what requires it to stop first.
        if not m.want or m.state in (service.STARTING, service.STOPPING, service.BACKOFF):
            return False
        if m.state == service.DOWN and m.want and not manager.supervisor.blocked(name):
            return False
    return True


def _settled_for_stop(manager: Manager, names: list[str]) -> bool:
    return all(manager.supervisor.services[n].machine.state not in service.RUNNING
               for n in names if n in manager.supervisor.services)


def _reply_when(manager: Manager, conn: Connection, ident: object, names: list[str],
                settled: Callable[[Manager, list[str]], bool], timeout: float) -> None:
    """Reply with the services' status once `settled` holds, or at the timeout."""
    state = {"done": False}

    def reply() -> None:
        if not state["done"]:
            state["done"] = True
            timer.cancel()
            conn.send(protocol.ok(ident, manager.supervisor.status(names)))

    def expire() -> None:
        if not state["done"]:
            state["done"] = True
            conn.send(protocol.error(ident, protocol.TIMEOUT,
                                     f"not settled within {timeout:g}s (still in progress)"))

    timer = manager.loop.call_later(timeout, expire)
    manager.supervisor.when(lambda: state["done"] or settled(manager, names), reply)


def _change(verb: str) -> Callable[[Manager, Connection, object, dict[str, object]], None]:
    def handle(manager: Manager, conn: Connection, ident: object,
               args: dict[str, object]) -> None:
        names = _names(manager, args)
        if manager.stopping:
            raise ProtocolError(protocol.FAILED, "roost is shutting down")
        getattr(manager.supervisor, verb)(names)
        if args.get("wait", True) is False:
            conn.send(protocol.ok(ident, manager.supervisor.status(names)))
            return
        settled = _settled_for_stop if verb == "stop" else _settled_for_start
        _reply_when(manager, conn, ident, names, settled, _number(args, "timeout", DEFAULT_WAIT))

    handle.__doc__ = f"{verb.capitalize()} the named services (and reply once settled)."
    return handle


def signal(manager: Manager, conn: Connection, ident: object, args: dict[str, object]) -> None:
    """Send a signal to a service's main process."""
    names = _names(manager, args)
    spec = args.get("signal")
    if not isinstance(spec, str | int) or isinstance(spec, bool):
        raise ProtocolError(protocol.BAD_REQUEST, "\"signal\" must be a name or a number")
    try:
        signum = sigs.number(str(spec))
    except ValueError as exc:
        raise ProtocolError(protocol.BAD_REQUEST, str(exc)) from None
    missing = [n for n in names if not manager.supervisor.send_signal(n, signum)]
    if missing:
        raise ProtocolError(protocol.FAILED, "not running: " + ", ".join(missing))
    conn.send(protocol.ok(ident, {"signal": sigs.name(signum), "services": names}))


def log(manager: Manager, conn: Connection, ident: object, args: dict[str, object]) -> None:
    """The last lines of a service's output; with follow, every new line after them."""
    names = _names(manager, args)
    count = int(_number(args, "lines", 20))
    result = []
    for name in names:
        for when, text in manager.supervisor.services[name].log.read_tail(count):
            result.append({"service": name, "time": when, "line": text})
    result.sort(key=lambda r: r["time"])  # type: ignore[arg-type, return-value]
    conn.send(protocol.ok(ident, result[-count:] if count else []))
    if not args.get("follow"):
        return
    conn.streaming = True
    logs = [manager.supervisor.services[name].log for name in names]

    def follower(name: str, when: float, text: str) -> None:
        conn.send(protocol.event(ident, {"service": name, "time": when, "line": text}))

    for service_log in logs:
        service_log.followers.append(follower)

    def unfollow() -> None:
        for service_log in logs:
            if follower in service_log.followers:
                service_log.followers.remove(follower)

    conn.on_close.append(unfollow)


def tree(manager: Manager, conn: Connection, ident: object, args: dict[str, object]) -> None:
    """Every process of every service (or of the named ones), and the orphans roost adopted."""
    explicit = _names(manager, args, required=False)
    names = explicit or list(manager.supervisor.services)
    tracker = manager.supervisor.tracker
    table = proc.snapshot()
    result = []
    for name in names:
        members = {st.pid: st for st in tracker.members(name, table)}
        main = manager.supervisor.services[name].machine.pid
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
        result.append({"service": name, "tracking": tracker.means_for(name),
                       "cgroup": tracker.cgroup_of(name), "main": main,
                       "processes": processes})
    orphans = [o for o in tracker.orphans(table) if not explicit or o["service"] in explicit]
    conn.send(protocol.ok(ident, {"services": result, "orphans": orphans}))


def reload(manager: Manager, conn: Connection, ident: object, args: dict[str, object]) -> None:
    """Re-read the configuration; apply it only if all of it is valid."""
    if manager.stopping:
        raise ProtocolError(protocol.FAILED, "roost is shutting down")
    try:
        summary = manager.reload()
    except ConfigInvalid as exc:
        raise ProtocolError(protocol.INVALID_CONFIG,
                            "the new configuration is invalid; nothing changed:\n"
                            + "\n".join(str(e) for e in exc.errors)) from None
    conn.send(protocol.ok(ident, summary))


def shutdown(manager: Manager, conn: Connection, ident: object,
             args: dict[str, object]) -> None:
    """Stop every service in order, then exit."""
    conn.send(protocol.ok(ident, {"shutting_down": True}))
    manager.shutdown("shutdown requested")


def _power(kind: str) -> Callable[[Manager, Connection, object, dict[str, object]], None]:
    def handle(manager: Manager, conn: Connection, ident: object,
               args: dict[str, object]) -> None:
        if manager.system is None:
            raise ProtocolError(protocol.FAILED, f"{kind}: this roost is not the system's init "
                                "(it supervises as `roost up`; use `roost shutdown`)")
        from roost.system.boot import peer_name  # noqa: PLC0415

        conn.send(protocol.ok(ident, manager.system.request(kind, peer_name(conn),
                                                            bool(args.get("force")))))

    handle.__doc__ = f"Ask init to {kind}: acknowledged at once, carried out after the reply."
    return handle


COMMANDS: dict[str, Callable[[Manager, Connection, object, dict[str, object]], None]] = {
    "ping": ping,
    "status": status,
    "start": _change("start"),
    "stop": _change("stop"),
    "restart": _change("restart"),
    "signal": signal,
    "log": log,
    "tree": tree,
    "reload": reload,
    "shutdown": shutdown,
    "poweroff": _power("poweroff"),
    "reboot": _power("reboot"),
    "halt": _power("halt"),
    "kexec": _power("kexec"),
}


def dispatch(manager: Manager, conn: Connection, ident: object, cmd: str,
             args: dict[str, object]) -> None:
    """Run one authorized command."""
    handler = COMMANDS.get(cmd)
    if handler is None:
        raise ProtocolError(protocol.UNKNOWN_COMMAND, f"unknown command {cmd!r}")
    handler(manager, conn, ident, args)
