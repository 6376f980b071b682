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
from roost.exits import ExitStatus
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
    from roost.loop import Loop, Timer
    from roost.reaper import Reaper
    from roost.spawn import Child

# Variables a service must not inherit from roost's own environment: they were
# addressed to roost.
# The timer that looks for a forking service's pid file, and how often it looks.
T_FIND_MAIN = "find-main"
PID_FILE_POLL = 0.02
# How many hand-overs in a row roost follows when a daemon's main process exits.
HAND_OVERS = 8
# How often roost re-reads a service whose top-level processes are dying as it looks.
SETTLE_READS = 5

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
        # A forking service's pid file as it was before the spawn: (inode, mtime, content).
        self._pid_files: dict[str, tuple[int, int, bytes] | None] = {}
        self.services: dict[str, Runtime] = {}
        self._waiters: list[tuple[Callable[[], bool], Callable[[], None]]] = []
        self._base_env = {k: v for k, v in os.environ.items() if k not in _PRIVATE_ENV}
        self._dependents: dict[str, set[str]] = {}
        self._requiring: dict[str, set[str]] = {}
        # How many services are starting, up or stopping, as last settled: "all
        # stopped" is asked after every change during a shutdown, so it must not
        # walk every service.
        self._running = 0
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
        self._requiring = graph.dependents(
            {name: rt.config.requires for name, rt in self.services.items()})

    def _requirers(self, name: str) -> set[str]:
        """Services that require `name`, transitively."""
        return graph.closure([name], self._requiring) - {name}

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
        """True when no service has a process (as of the last settled change)."""
        return self._running == 0

    def send_signal(self, name: str, signum: int) -> bool:
        """Send `signum` to a service's main process; False if it has none."""
        rt = self.services[name]
        if rt.child is not None:
            return rt.child.signal(signum)
        return self.tracker.signal_main(name, signum)

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
        if rt.seen_state in RUNNING:
            self._running -= 1
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
                    other.want and other.state == service.DOWN and not self.blocked(dep)):
                m.hold(now, f"waiting for {dep}")
                return
        self._act(rt, m.start(now))

    def blocked(self, name: str) -> bool:
        """True if something `name` requires, directly or further down, has failed."""
        requires = {n: r.config.requires for n, r in self.services.items()}
        return any(self.services[dep].machine.state == service.FAILED
                   for dep in graph.closure([name], requires) - {name})

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
            self._running += (m.state in RUNNING) - (before in RUNNING)
            self._announce(rt)
            for hook in self.on_change:
                hook(rt, before)
            # Whoever waits on this service may now go: dependents to start, or
            # (when it stopped) the services it was ordered after, to stop.
            self._wake(sorted(self._dependents.get(rt.name, ())))
            self._wake(rt.config.after)
            if m.state == service.FAILED:
                self._hold_requirers(rt.name)
                # A service that only wants one of these, which now cannot start,
                # need wait no longer.
                held = self._requirers(rt.name) | {rt.name}
                self._wake(sorted({d for n in held for d in self._dependents.get(n, ())}))
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
            command.cgroup = self.tracker.placement(cfg)
        except (KeyError, OSError, ValueError) as exc:
            self._act(rt, rt.machine.spawn_failed(f"cannot start: {exc}", now))
            return
        if cfg.pid_file:
            # Before the spawn: a launcher may write the file before spawn() returns.
            self._pid_files[rt.name] = _file_state(self._pid_file_path(rt))
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
        self.tracker.unwatch_main(rt.name)
        self.tracker.started(rt.name, child.pid, forking=cfg.type == "forking")
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
        # Unwatch before exec_result() closes the fd: a child forked meanwhile may hold a
        # copy, which would keep the epoll entry alive and report it under a reused number.
        self.loop.unwatch(fd)
        known, error = child.exec_result()
        if not known:
            self.loop.watch(fd, READ, lambda _ev: self._exec_report(rt, child))
            return
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
            self.loop.unwatch(child.exec_fd)  # before the fd is closed: see _exec_report
            known, error = child.exec_result()
            if known and error:
                rt.exec_error = error
        child.close()
        if rt.child is child:
            rt.child = None
        self._close_notify_fd(rt)
        self.tracker.exited(rt.name, child.pid)
        leftovers = bool(self.tracker.members(rt.name))
        if not leftovers:
            rt.log.settle()
        detail = f"{status.describe()}: {rt.exec_error}" if rt.exec_error else None
        if rt.exec_error is not None and not leftovers:
            # The command never ran: a failure to start, not a crash to restart.
            self._act(rt, rt.machine.spawn_failed(f"cannot start: {rt.exec_error}",
                                                  self.loop.now()))
        else:
            self._act(rt, rt.machine.exited(status, self.loop.now(), leftovers, detail))
        if leftovers and rt.machine.state == service.STOPPING:
            self.tracker.when_empty(rt.name, lambda: self._gone(rt))

    def _gone(self, rt: Runtime) -> None:
        m = rt.machine
        rt.log.settle()
        if m.pid is not None and rt.child is None and self.tracker.main_of(rt.name) is None:
            # The main process went with everything else, its exit unseen: all is gone.
            self._act(rt, m.exited(ExitStatus(), self.loop.now(), False,
                                   f"main process {m.pid} is gone"))
            return
        self._act(rt, m.gone(self.loop.now()))

    def _kill(self, rt: Runtime, signum: int, scope: str) -> None:
        self._send(rt, signum, scope)
        if scope == "all" and signum not in (_signal.SIGKILL, _signal.SIGCONT):
            # A stopped process would keep the signal pending forever.
            self._send(rt, _signal.SIGCONT, scope)
        console.debug(f"{rt.name}: sent {sigs.name(signum)} ({scope})")

    def _send(self, rt: Runtime, signum: int, scope: str) -> None:
        if scope != "all":
            if rt.child is not None:
                rt.child.signal(signum)
            else:
                self.tracker.signal_main(rt.name, signum)
            return
        # Every member, through pidfds verified after opening: a recycled PID is never hit.
        self.tracker.signal_all(rt.name, signum)
        if rt.machine.state == service.STOPPING and rt.child is None \
                and self.tracker.main_of(rt.name) is None:
            # No main process left whose exit would end the stop: its last process will.
            self.tracker.when_empty(rt.name, lambda: self._gone(rt))

    # -- forking services ------------------------------------------------------------

    def _pid_file_path(self, rt: Runtime) -> str:
        path = rt.config.pid_file or ""
        return os.path.join(rt.config.working_directory or "/", path)

    def _read_pid_file(self, rt: Runtime) -> int | None:
        """The PID a forking service's pid file names, once written for this start."""
        path = self._pid_file_path(rt)
        state = _file_state(path)
        if state is None or state == self._pid_files.get(rt.name):
            return None  # not written yet (or left over from an earlier run, untouched)
        try:
            return int(state[2].split()[0])
        except (ValueError, IndexError):
            return None  # being written

    def _find_main(self, rt: Runtime) -> None:
        """The launcher exited 0: name the daemon (pid file, else the one top process)."""
        m = rt.machine
        if m.state != service.STARTING or rt.timers.get(T_FIND_MAIN) is not None:
            return
        now = self.loop.now()
        name = rt.name
        cfg = rt.config
        if cfg.pid_file:
            members = self.tracker.members(name)
            path = self._pid_file_path(rt)
            pid = self._read_pid_file(rt)
            if pid is not None and self.tracker.belongs(name, pid):
                self._found_main(rt, pid)
                return
            if pid is not None and proc.stat(pid) is not None:
                self._act(rt, m.main_missing(
                    f"pid file {path} names pid {pid} ({proc.cmdline(pid) or '?'}), which is "
                    f"not a process of {name}: refused", now))
                return
            if not members:
                self._act(rt, m.main_missing(
                    f"the launcher exited 0 but left no process (pid file {path} "
                    f"{'names a dead process' if pid else 'not written'})", now))
                return

            # The daemon writes its pid file once it has settled, often after the
            # launcher is gone: look again until it does (the start timeout bounds this).
            def again() -> None:
                rt.timers.pop(T_FIND_MAIN, None)
                self._find_main(rt)

            rt.timers[T_FIND_MAIN] = self.loop.call_later(PID_FILE_POLL, again)
            return
        members, tops = self._tops(rt)
        if len(tops) == 1:
            self._found_main(rt, tops[0].pid)
            return
        if not members:
            reason = "the launcher exited 0 but left no process"
        else:
            reason = (f"{len(tops)} top-level processes left "
                      f"({', '.join(str(st.pid) for st in tops)}) and no pid_file to choose "
                      "the main one")
        self._act(rt, m.main_missing(reason, now))

    def _tops(self, rt: Runtime) -> tuple[list[proc.ProcStat], list[proc.ProcStat]]:
        """The service's members and its top-level ones, read while nothing moves.

        Each /proc read is a moment of its own: mid-dance, a parent can be read alive
        and its child read already adopted, two tops at once. Read again while a top
        has died since it was read.
        """
        for _ in range(SETTLE_READS):
            members = self.tracker.members(rt.name)
            tops = _tops(members)
            if len(tops) <= 1 or all(_alive(st.pid) for st in tops):
                break
        return members, tops

    def _found_main(self, rt: Runtime, pid: int) -> None:
        self.tracker.settled(rt.name)
        self._act(rt, rt.machine.main_found(pid, self.loop.now()))
        if rt.machine.pid == pid and not self._watch_main(rt, pid):
            self._main_exited(rt, pid, None)

    def _watch_main(self, rt: Runtime, pid: int) -> bool:
        """Follow the daemon's exit: its status if roost reaps it, else its pidfd."""
        def reaped(_pid: int, status: ExitStatus) -> None:
            self._main_exited(rt, pid, status)

        def gone() -> None:
            # Its pidfd says it exited. If it was roost's child (adopted), the reaper
            # has its status: drain it, which calls reaped(). Else its parent reaps it.
            self.reaper.drain()
            if self.reaper.owns(pid):
                self.reaper.forget(pid)
                self._main_exited(rt, pid, None)

        if not self.tracker.watch_main(rt.name, pid, gone):
            return False
        self.reaper.watch(pid, reaped)
        return True

    def _main_exited(self, rt: Runtime, pid: int, status: ExitStatus | None) -> None:
        """The daemon of a forking service ended (status None: its parent reaped it)."""
        born = 0
        if self.tracker.main_of(rt.name) == pid:
            born = self.tracker.main_started(rt.name)
            self.tracker.unwatch_main(rt.name)
        self.reaper.forget(pid)
        m = rt.machine
        if m.pid != pid:
            return
        # The dance may go on while roost follows it: an heir can exit before it is pinned.
        for _ in range(HAND_OVERS):
            heir = self._heir(rt, pid, status, born)
            if heir is None:
                break
            how = status.describe() if status is not None else "exited"
            console.say(f"{rt.name}: main process {pid} {how}, handing over to {heir}")
            st = proc.stat(heir)
            m.main_changed(heir, self.loop.now())
            if self._watch_main(rt, heir):
                return
            pid, status, born = heir, None, st.starttime if st is not None else born
        leftovers = bool(self.tracker.members(rt.name))
        detail = None if status is not None else (
            f"main process {pid} exited (its status went to its own parent)")
        self._act(rt, m.exited(status or ExitStatus(), self.loop.now(), leftovers, detail))
        if leftovers:
            self.tracker.when_empty(rt.name, lambda: self._gone(rt))

    def _heir(self, rt: Runtime, old: int, status: ExitStatus | None, born: int) -> int | None:
        """The process the daemon handed over to as it exited, if it did.

        With a pid file: the process it names now, if another live member. Without:
        an exit 0 (or unseen) that leaves exactly one top-level process, born after
        the old main, is the daemon's fork dance going on, not its death.
        """
        if rt.machine.state != service.UP:
            return None
        if rt.config.pid_file:
            pid = self._read_pid_file(rt)
            if pid is not None and pid != old and self.tracker.belongs(rt.name, pid):
                return pid
            return None
        if status is not None and not status.success:
            return None
        members, tops = self._tops(rt)
        if len(tops) == 1 and tops[0].starttime >= born:
            return tops[0].pid
        console.debug(f"{rt.name}: no hand-over from {old}: top-level "
                      f"{[(st.pid, st.ppid, st.state, st.starttime) for st in tops]} of "
                      f"{len(members)} (main born {born})")
        return None

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


def _tops(members: list[proc.ProcStat]) -> list[proc.ProcStat]:
    """The members whose parent is not a member: the tops of a service's process trees."""
    pids = {st.pid for st in members}
    return [st for st in members if st.ppid not in pids]


def _alive(pid: int) -> bool:
    st = proc.stat(pid)
    return st is not None and st.state != "Z"


def _file_state(path: str) -> tuple[int, int, bytes] | None:
    """(inode, mtime, content) of a small file, or None if it cannot be read."""
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            return st.st_ino, st.st_mtime_ns, f.read(64)
    except OSError:
        return None


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
