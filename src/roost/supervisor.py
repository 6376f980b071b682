"""The supervisor: owns every service, drives its machine, and keeps dependency order.

Each service has a pure state machine (service.py). This module is the other
half: it turns the machine's actions into processes, signals and timers, and
turns what the system reports (exits, readiness, timers) into the machine's
events. It also decides *when* each machine may start or stop: a service starts
once everything it requires is ready and everything it wants has settled, and
stops only after everything ordered after it has stopped.
"""

from __future__ import annotations

import _signal
import os
import pwd

from roost import console, graph, proc, service, sigs
from roost.logs import LogSettings, ServiceLog
from roost.loop import READ
from roost.readiness import NotificationFd, NotifySocket
from roost.service import READY, RUNNING, Machine
from roost.spawn import Command, SpawnError, spawn
from roost.tracking import Tracker

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from roost.config.model import Config, ServiceConfig
    from roost.exits import ExitStatus
    from roost.loop import Loop, Timer
    from roost.reaper import Reaper
    from roost.spawn import Child

# Variables a service must not inherit from roost's own environment: they were
# addressed to roost.
_PRIVATE_ENV = ("NOTIFY_SOCKET", "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "ROOST_CONTROL")


class Runtime:
    """One configured service: its machine, its current process, and its pipes."""

    __slots__ = ("child", "config", "exec_error", "log", "machine", "name", "notify_fd",
                 "notify_sock", "removing", "seen_state", "status_text", "stop_reason",
                 "timers")

    def __init__(self, config: ServiceConfig, machine: Machine, log: ServiceLog):
        self.name = config.name
        self.config = config
        self.machine = machine
        self.log = log
        self.child: Child | None = None
        self.exec_error: str | None = None
        self.timers: dict[str, Timer] = {}
        self.notify_fd: NotificationFd | None = None
        self.notify_sock: NotifySocket | None = None
        self.removing = False
        self.status_text = ""
        self.stop_reason = "stopped"
        # The state last announced and acted on: a change is noticed once, however
        # deeply nested the event that caused it.
        self.seen_state = machine.state


class Supervisor:
    """Every service of a configuration, supervised in one reactor."""

    def __init__(self, config: Config, loop: Loop, reaper: Reaper, logs: LogSettings, *,
                 pdeathsig: int = 0, nofile: tuple[int, int] | None = None,
                 tracker: Tracker | None = None):
        self.config = config
        self.loop = loop
        self.reaper = reaper
        self.log_settings = logs
        self.pdeathsig = pdeathsig
        self.nofile = nofile
        self.tracker = tracker or Tracker(loop)
        self.services: dict[str, Runtime] = {}
        self._waiters: list[tuple[Callable[[], bool], Callable[[], None]]] = []
        self._base_env = {k: v for k, v in os.environ.items() if k not in _PRIVATE_ENV}
        self._dependents: dict[str, set[str]] = {}
        self.on_change: list[Callable[[Runtime, str], None]] = []
        for svc in config.services.values():
            self._add(svc)
        self._rebuild_graph()

    # -- configuration ---------------------------------------------------------

    def _add(self, config: ServiceConfig) -> Runtime:
        log = ServiceLog(config.name, self.log_settings)
        log.attach(self.loop)
        rt = Runtime(config, Machine(config, self.loop.now()), log)
        if config.type == "notify":
            self._open_notify_socket(rt)
        self.services[config.name] = rt
        return rt

    def _open_notify_socket(self, rt: Runtime) -> None:
        def message(pid: int, uid: int, fields: dict[str, str]) -> None:
            self._notify_message(rt, pid, uid, fields)

        rt.notify_sock = NotifySocket(self.loop, rt.name, message)

    def _rebuild_graph(self) -> None:
        self._dependents = graph.dependents(
            {name: rt.config.after for name, rt in self.services.items()})

    def _requirers(self, name: str) -> set[str]:
        """Services that require `name`, transitively."""
        requiring = graph.dependents(
            {n: rt.config.requires for n, rt in self.services.items()})
        return graph.closure([name], requiring) - {name}

    # -- requests ----------------------------------------------------------------

    def start_all(self) -> None:
        """Start every service marked autostart, in dependency order."""
        self.start([n for n, rt in self.services.items() if rt.config.autostart], explicit=False)

    def start(self, names: Iterable[str], explicit: bool = True) -> None:
        """Want `names` and what they require up; start each as soon as its turn comes."""
        names = list(names)
        targets = graph.closure(names, {n: rt.config.requires for n, rt in self.services.items()})
        for name in targets:
            rt = self.services[name]
            m = rt.machine
            if m.state == service.FAILED or (explicit and name in names):
                m.reset(self.loop.now())
            m.want = True
        self._wake(sorted(targets))

    def stop(self, names: Iterable[str], reason: str = "stopped") -> None:
        """Want `names` and everything that requires them down; stop in reverse order."""
        targets: set[str] = set()
        for name in names:
            targets |= {name} | self._requirers(name)
        # Every want changes before any machine moves: a move wakes its neighbours,
        # which must already see the whole request.
        for name in targets:
            rt = self.services[name]
            rt.machine.want = False
            rt.stop_reason = reason
        for name in sorted(targets):
            rt = self.services[name]
            if rt.machine.state in (service.BACKOFF, service.DONE, service.FAILED,
                                    service.DOWN):
                self._act(rt, rt.machine.stop(self.loop.now(), reason))
        self._wake(sorted(targets))

    def restart(self, names: Iterable[str]) -> None:
        """Stop `names` (and what requires them, if running), then start them all again."""
        names = list(names)
        running = {n for n, rt in self.services.items() if rt.machine.state in RUNNING}
        group = set(names)
        for name in names:
            group |= self._requirers(name) & running
        if group == set(names):
            for name in names:
                rt = self.services[name]
                if rt.machine.state in (service.STARTING, service.UP):
                    self._act(rt, rt.machine.restart(self.loop.now()))
                else:
                    self.start([name])
            return
        self.stop(group, reason="restarting")
        self.when(lambda: all(self.services[n].machine.state not in RUNNING for n in group),
                  lambda: self.start(group))

    def stop_all(self, then: Callable[[], None] | None = None) -> None:
        """Stop every service in reverse dependency order; call `then` when all are down."""
        self.stop(list(self.services), reason="shutting down")
        if then is not None:
            self.when(self.all_stopped, then)

    def all_stopped(self) -> bool:
        """True when no service has a process."""
        return all(rt.machine.state not in RUNNING for rt in self.services.values())

    def send_signal(self, name: str, signum: int) -> bool:
        """Send `signum` to a service's main process; False if it has none."""
        rt = self.services[name]
        return rt.child is not None and rt.child.signal(signum)

    def when(self, condition: Callable[[], bool], callback: Callable[[], None]) -> None:
        """Call `callback` once `condition()` holds (checked after every state change)."""
        if condition():
            callback()
        else:
            self._waiters.append((condition, callback))

    # -- reload --------------------------------------------------------------------

    def reload(self, new: Config) -> dict[str, list[str]]:
        """Apply a validated configuration: add, remove and restart only what changed."""
        old = {name: rt.config for name, rt in self.services.items() if not rt.removing}
        added = sorted(set(new.services) - set(old))
        removed = sorted(set(old) - set(new.services))
        changed = sorted(n for n in set(old) & set(new.services)
                         if old[n].fingerprint() != new.services[n].fingerprint())
        self.config = new
        for name in removed:
            self._retire(self.services[name])
        restart: list[str] = []
        for name in changed:
            rt = self.services[name]
            cfg = new.services[name]
            was_running = rt.machine.state in (*RUNNING, service.BACKOFF)
            rt.config = cfg
            rt.machine.config = cfg
            if cfg.type == "notify" and rt.notify_sock is None:
                self._open_notify_socket(rt)
            if was_running:
                restart.append(name)
        for name in added:
            self._add(new.services[name])
        self._rebuild_graph()
        if restart:
            self.restart(restart)
        self.start([n for n in added if new.services[n].autostart], explicit=False)
        return {"added": added, "removed": removed, "changed": changed}

    def _retire(self, rt: Runtime) -> None:
        """Stop a service that left the configuration, then forget it."""
        rt.removing = True
        self.stop([rt.name], reason="removed from the configuration")
        self.when(lambda: rt.machine.state not in RUNNING, lambda: self._remove(rt))

    def _remove(self, rt: Runtime) -> None:
        if self.services.get(rt.name) is not rt:
            return
        for timer in rt.timers.values():
            timer.cancel()
        rt.log.close(self.loop)
        if rt.notify_sock is not None:
            rt.notify_sock.close()
        self.tracker.forget(rt.name)
        del self.services[rt.name]
        self._rebuild_graph()
        console.say(f"{rt.name}: removed")

    # -- scheduling ------------------------------------------------------------------

    def _wake(self, names: Iterable[str]) -> None:
        """Move each named service toward what is wanted of it, if its turn has come."""
        for name in names:
            rt = self.services.get(name)
            if rt is None:
                continue
            if rt.machine.want:
                self._try_start(rt)
            else:
                self._try_stop(rt)

    def _try_start(self, rt: Runtime) -> None:
        m = rt.machine
        if m.state != service.DOWN:
            return
        now = self.loop.now()
        for dep in rt.config.requires:
            other = self.services[dep].machine
            if other.state == service.FAILED:
                m.hold(now, f"requirement {dep} failed")
                return
            if other.state not in READY:
                m.hold(now, f"waiting for {dep}")
                return
        for dep in rt.config.wants:
            other = self.services[dep].machine
            if other.state in (service.STARTING, service.STOPPING) or (
                    other.want and other.state == service.DOWN):
                m.hold(now, f"waiting for {dep}")
                return
        self._act(rt, m.start(now))

    def _try_stop(self, rt: Runtime) -> None:
        m = rt.machine
        if m.state not in (service.STARTING, service.UP):
            return
        for dependent in self._dependents.get(rt.name, ()):
            other = self.services.get(dependent)
            # Only a dependent that is itself on its way down holds this one up.
            if other is not None and not other.machine.want and other.machine.state in RUNNING:
                m.reason = f"waiting for {dependent} to stop"
                return
        self._act(rt, m.stop(self.loop.now(), rt.stop_reason))

    def _settle(self, rt: Runtime) -> None:
        """Notice a state change once: announce it, and wake whoever waits on it."""
        m = rt.machine
        if m.state != rt.seen_state:
            before, rt.seen_state = rt.seen_state, m.state
            self._announce(rt)
            for hook in self.on_change:
                hook(rt, before)
            # Whoever waits on this service may now go: dependents to start, or
            # (when it stopped) the services it was ordered after, to stop.
            self._wake(sorted(self._dependents.get(rt.name, ())))
            self._wake(rt.config.after)
            if m.state == service.FAILED:
                self._hold_requirers(rt.name)
        if self._waiters:
            waiting, self._waiters = self._waiters, []
            for condition, callback in waiting:
                if condition():
                    callback()
                else:
                    self._waiters.append((condition, callback))

    def _hold_requirers(self, name: str) -> None:
        """A requirement failed: stop what requires it, and keep it wanted for later."""
        now = self.loop.now()
        for dependent in sorted(self._requirers(name)):
            rt = self.services[dependent]
            if rt.machine.state in (service.STARTING, service.UP, service.BACKOFF):
                self._act(rt, rt.machine.stop(now, f"requirement {name} failed"))
                rt.machine.want = True  # back up once the requirement is

    def _announce(self, rt: Runtime) -> None:
        m = rt.machine
        text = m.state
        if m.state == service.UP and m.pid:
            text += f" (pid {m.pid})"
        if m.reason:
            text += f": {m.reason}"
        console.say(f"{rt.name}: {text}")

    # -- actions -------------------------------------------------------------------

    def _act(self, rt: Runtime, actions: list[service.Action]) -> None:
        """Carry out a machine's actions, then notice the state it reached."""
        for action in actions:
            if isinstance(action, service.Spawn):
                self._spawn(rt)
            elif isinstance(action, service.Kill):
                self._kill(rt, action.signal, action.scope)
            elif isinstance(action, service.Arm):
                self._arm(rt, action.name, action.delay)
            elif isinstance(action, service.Disarm):
                timer = rt.timers.pop(action.name, None)
                if timer is not None:
                    timer.cancel()
            elif isinstance(action, service.FindMain):
                self._find_main(rt)
        self._settle(rt)

    def _arm(self, rt: Runtime, name: str, delay: float) -> None:
        old = rt.timers.pop(name, None)
        if old is not None:
            old.cancel()

        def fire() -> None:
            rt.timers.pop(name, None)
            self._act(rt, rt.machine.timer(name, self.loop.now()))

        rt.timers[name] = self.loop.call_later(delay, fire)

    def _spawn(self, rt: Runtime) -> None:
        cfg = rt.config
        rt.exec_error = None
        now = self.loop.now()
        try:
            command = self._command(rt)
        except (KeyError, OSError, ValueError) as exc:
            self._act(rt, rt.machine.spawn_failed(f"cannot start: {exc}", now))
            return
        try:
            child = spawn(command)
        except SpawnError as exc:
            self._close_notify_fd(rt)
            self._act(rt, rt.machine.spawn_failed(str(exc), now))
            return
        except OSError as exc:
            self._close_notify_fd(rt)
            self._act(rt, rt.machine.spawn_failed(f"cannot start: {exc.strerror}", now))
            return
        if rt.notify_fd is not None:
            rt.notify_fd.spawned()
        rt.child = child
        self.tracker.started(rt.name, child.pid)
        self.reaper.watch(child.pid, lambda pid, status: self._exited(rt, child, status))
        self.loop.watch(child.exec_fd, READ, lambda _ev: self._exec_report(rt, child))
        rt.machine.spawned(child.pid, now)
        console.debug(f"{cfg.name}: spawned {child.pid}")

    def _command(self, rt: Runtime) -> Command:
        cfg = rt.config
        env = dict(self._base_env)
        uid = gid = None
        groups: list[int] | None = None
        if cfg.user is not None:
            entry = _passwd(cfg.user)
            if entry is not None:
                uid, gid = entry.pw_uid, entry.pw_gid
                groups = os.getgrouplist(entry.pw_name, entry.pw_gid)
                env.update(USER=entry.pw_name, LOGNAME=entry.pw_name, HOME=entry.pw_dir,
                           SHELL=entry.pw_shell or "/bin/sh")
            else:
                uid = gid = int(cfg.user)
                groups = []
        if cfg.group is not None:
            gid = int(cfg.group) if cfg.group.isdigit() else _group_id(cfg.group)
            groups = [gid] if groups is None else groups
        env.update(cfg.environment)
        fds = {1: rt.log.write_fd, 2: rt.log.write_fd}
        ready_fd = cfg.ready_fd
        if ready_fd is not None:
            self._close_notify_fd(rt)
            rt.notify_fd = NotificationFd(self.loop, lambda: self._ready(rt))
            fds[ready_fd] = rt.notify_fd.write_fd
        if rt.notify_sock is not None:
            env["NOTIFY_SOCKET"] = rt.notify_sock.address
        return Command(cfg.argv, env=env, cwd=cfg.working_directory, umask=cfg.umask, uid=uid,
                       gid=gid, groups=groups, fds=fds, pdeathsig=self.pdeathsig,
                       nofile=self.nofile)

    def _close_notify_fd(self, rt: Runtime) -> None:
        if rt.notify_fd is not None:
            rt.notify_fd.close()
            rt.notify_fd = None

    def _exec_report(self, rt: Runtime, child: Child) -> None:
        fd = child.exec_fd
        known, error = child.exec_result()
        if not known:
            return
        self.loop.unwatch(fd)
        if error is not None:
            rt.exec_error = error
        elif rt.child is child:
            self._act(rt, rt.machine.exec_done(self.loop.now()))

    def _ready(self, rt: Runtime) -> None:
        self._act(rt, rt.machine.ready(self.loop.now()))

    def _notify_message(self, rt: Runtime, pid: int, uid: int, fields: dict[str, str]) -> None:
        member = rt.child is not None and (pid == rt.child.pid
                                           or self.tracker.belongs(rt.name, pid))
        if not member and uid not in (0, _uid_of(rt.config.user)):
            console.say(f"{rt.name}: ignored a notification from pid {pid} (uid {uid}): "
                        "not a process of the service")
            return
        if "STATUS" in fields:
            rt.status_text = fields["STATUS"]
        if fields.get("READY") == "1":
            self._ready(rt)

    def _exited(self, rt: Runtime, child: Child, status: ExitStatus) -> None:
        if child.exec_fd >= 0:
            fd = child.exec_fd
            known, error = child.exec_result()
            if known:
                self.loop.unwatch(fd)
                if error:
                    rt.exec_error = error
        child.close()
        if rt.child is child:
            rt.child = None
        self._close_notify_fd(rt)
        leftovers = bool(self.tracker.members(rt.name))
        detail = f"{status.describe()}: {rt.exec_error}" if rt.exec_error else None
        self._act(rt, rt.machine.exited(status, self.loop.now(), leftovers, detail))
        if leftovers:
            self.tracker.when_empty(rt.name, lambda: self._gone(rt))

    def _gone(self, rt: Runtime) -> None:
        self._act(rt, rt.machine.gone(self.loop.now()))

    def _kill(self, rt: Runtime, signum: int, scope: str) -> None:
        self._send(rt, signum, scope)
        if scope == "all" and signum not in (_signal.SIGKILL, _signal.SIGCONT):
            # A stopped process would keep the signal pending forever.
            self._send(rt, _signal.SIGCONT, scope)
        console.debug(f"{rt.name}: sent {sigs.name(signum)} ({scope})")

    def _send(self, rt: Runtime, signum: int, scope: str) -> None:
        child = rt.child
        if child is not None:
            if scope == "all":
                # While the leader is unreaped its PID, and so the group id, cannot be reused.
                try:
                    os.killpg(child.pid, signum)
                    return
                except ProcessLookupError:
                    pass
            child.signal(signum)
            return
        if scope != "all":
            return
        for st in self.tracker.members(rt.name):
            fd = proc.pin(st)
            if fd is None:
                continue
            try:
                _signal.pidfd_send_signal(fd, signum)
            except ProcessLookupError:
                pass
            finally:
                os.close(fd)

    def _find_main(self, rt: Runtime) -> None:
        now = self.loop.now()
        members = self.tracker.members(rt.name)
        pid: int | None = None
        cfg = rt.config
        if cfg.pid_file:
            try:
                with open(cfg.pid_file) as f:
                    pid = int(f.read().split()[0])
            except (OSError, ValueError, IndexError) as exc:
                self._act(rt, rt.machine.main_missing(f"cannot read pid file {cfg.pid_file}: "
                                                      f"{exc}", now))
                return
            if pid not in {st.pid for st in members}:
                self._act(rt, rt.machine.main_missing(
                    f"pid file {cfg.pid_file} names {pid}, not a process of the service", now))
                return
        elif len(members) == 1:
            pid = members[0].pid
        else:
            reason = ("the launcher exited 0 but left no process" if not members else
                      f"{len(members)} processes left and no pid_file to choose the main one")
            self._act(rt, rt.machine.main_missing(reason, now))
            return
        self._act(rt, rt.machine.main_found(pid, now))

    # -- reporting -----------------------------------------------------------------

    def status(self, names: Iterable[str] | None = None) -> list[dict[str, object]]:
        """One record per service: name, state, pid, uptime, restarts, last exit, reason."""
        now = self.loop.now()
        chosen = list(names) if names else list(self.services)
        records: list[dict[str, object]] = []
        for name in chosen:
            rt = self.services[name]
            m = rt.machine
            records.append({
                "name": name,
                "state": m.state,
                "pid": m.pid,
                "type": rt.config.type,
                "since": round(now - m.since, 3),
                "uptime": round(now - m.up_since, 3) if m.state == service.UP and m.up_since
                else None,
                "restarts": m.restarts,
                "last_exit": m.last_exit,
                "reason": m.reason,
                "status": rt.status_text,
                "want": m.want,
                "tracking": self.tracker.means_for(name),
            })
        return records


def _passwd(user: str | None) -> pwd.struct_passwd | None:
    if user is None:
        return None
    try:
        return pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
    except KeyError:
        if user.isdigit():
            return None
        raise


def _uid_of(user: str | None) -> int:
    entry = _passwd(user)
    if entry is not None:
        return entry.pw_uid
    return int(user) if user is not None else os.getuid()


def _group_id(name: str) -> int:
    import grp  # noqa: PLC0415

    return grp.getgrnam(name).gr_gid
