"""The supervisor: the pure core's moves carried out as processes, signals and timers.

Every rule lives in the core: each service's machine (core/machine.py) and the
order between them (core/order.py) turn requests and events into moves. This
module is the other half. It carries the moves out (spawn, signal, arm a timer,
find a forking daemon, announce a change) and turns what the system reports (an
exit, readiness, a timer, a service that emptied) into the machine's events.

Its edge is what it is given: the reactor, the reaper, the tracker and the
spawner. A test gives it fakes and drives a whole configuration in memory
(tests/unit/test_supervisor.py).
"""

from __future__ import annotations

import _signal
import os

from roost.config.errors import ConfigError, ConfigInvalid
from roost.core import actions, machine, sigs
from roost.core.commands import FIRST
from roost.core.exits import ExitStatus
from roost.core.order import Changed, Order
from roost.kernel import chance, console
from roost.kernel.loop import READ
from roost.kernel.spawn import SpawnError, spawn
from roost.supervise import budget, command
from roost.supervise.channels import NotificationFd, NotifySocket
from roost.supervise.forking import Daemons
from roost.supervise.logs import LogSettings, ServiceLog
from roost.supervise.readiness import Notifications
from roost.supervise.runtime import Runtime, broken_record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from roost.core.actions import Action
    from roost.core.model import Config, ServiceConfig
    from roost.core.order import Move
    from roost.kernel.loop import Loop
    from roost.kernel.reaper import Reaper
    from roost.kernel.spawn import Child, Command
    from roost.supervise.around import Around
    from roost.supervise.health import Checks
    from roost.tracking import Tracker

_STOPPED = frozenset({machine.DOWN, machine.FAILED, machine.DONE})  # stored fds go there


class Supervisor:
    """Every service of a configuration, supervised in one reactor."""

    def __init__(self, config: Config, loop: Loop, reaper: Reaper, logs: LogSettings,
                 tracker: Tracker, *, pdeathsig: int = 0,
                 nofile: tuple[int, int] | None = None,
                 spawner: Callable[[Command], Child] = spawn,
                 environ: dict[str, str] | None = None,
                 broken: dict[str, str] | None = None):
        self.loop = loop
        self.reaper = reaper
        self.log_settings = logs
        self.tracker = tracker
        self.pdeathsig = pdeathsig
        self.nofile = nofile
        self._spawner = spawner
        self._base_env = command.inherited(os.environ if environ is None else environ)
        self.order = Order((), loop.now(), chance.uniform)
        self.services: dict[str, Runtime] = {}
        self.daemons = Daemons(loop, reaper, tracker, event=self._event, gone=self._gone)
        self.notifications = Notifications(loop, tracker, self.daemons, self._event)
        self._around: Around | None = None  # made for the first command around a main one
        self._health: Checks | None = None  # made for the first service with a health check
        self._waiters: list[tuple[Callable[[], bool], Callable[[], None]]] = []
        # Called after a batch of moves in which a service changed state: roost's own
        # readiness follows them (announce.py). None costs a roost nobody watches nothing.
        self.on_change: Callable[[], None] | None = None
        # Told of every state change, as it is announced: `roost events` (control/streams.py).
        self.watchers: list[Callable[[Runtime], None]] = []
        # Services a system's init could not configure, each with its error: shown by
        # status as failed, never started; a reload that succeeds replaces them.
        self.broken = dict(broken or {})
        services = list(config.services.values())
        budget.check(config.directory, services, bool(logs.directory))
        self._add_all(config.directory, services)

    # -- configuration ---------------------------------------------------------

    def _add_all(self, directory: str, configs: list[ServiceConfig]) -> list[Runtime]:
        """Add every service, or none: a descriptor that runs out undoes the others."""
        made: list[Runtime] = []
        try:
            for cfg in configs:
                made.append(self._add(cfg))
        except OSError as exc:
            for rt in made:
                self._discard(rt)
            raise ConfigInvalid([ConfigError(
                directory, f"cannot set up {cfg.name} ({len(made)} of {len(configs)} new "
                f"services were): {exc.strerror}; nothing was changed")]) from None
        return made

    def _add(self, config: ServiceConfig) -> Runtime:
        log = ServiceLog(config.name, self.log_settings)
        rt = Runtime(self.order.add(config, self.loop.now()), log)
        try:
            if config.type == "notify":
                self._open_notify_socket(rt)
        except OSError:
            self.order.remove(config.name)
            log.close(self.loop)
            raise
        log.attach(self.loop)
        self.services[config.name] = rt
        return rt

    def _discard(self, rt: Runtime) -> None:
        """Undo `_add` of a service that never ran."""
        rt.release(self.loop)
        self.order.remove(rt.name)
        del self.services[rt.name]

    def _open_notify_socket(self, rt: Runtime) -> None:
        def message(pid: int, fields: dict[str, str] | None, fds: list[int]) -> None:
            self.notifications.message(rt, pid, fields, fds)

        rt.notify_sock = NotifySocket(self.loop, rt.name, message)

    # -- requests ----------------------------------------------------------------

    def start_all(self) -> None:
        """Start every service marked autostart, in dependency order."""
        self._apply(self.order.start_all(self.loop.now()))

    def start(self, names: Iterable[str]) -> None:
        """Want `names` and what they require up; start each as soon as its turn comes."""
        self._apply(self.order.start(names, self.loop.now()))

    def stop(self, names: Iterable[str], reason: str = "stopped") -> None:
        """Want `names` and everything that requires them down; stop in reverse order."""
        self._apply(self.order.stop(names, self.loop.now(), reason))

    def restart(self, names: Iterable[str]) -> None:
        """Stop `names` (and what requires them, if running), then start them all again."""
        self._apply(self.order.restart(names, self.loop.now()))

    def stop_all(self, then: Callable[[], None] | None = None) -> None:
        """Stop every service in reverse dependency order; call `then` when all are down."""
        self._apply(self.order.stop_all(self.loop.now()))
        if then is not None:
            self.when(self.order.all_down, then)

    def send_signal(self, name: str, signum: int) -> bool:
        """Send `signum` to a service's main process; False if it has none."""
        rt = self.services[name]
        if rt.child is not None and rt.child.pid == rt.machine.pid:
            return rt.child.signal(signum)
        return self.tracker.signal_main(name, signum)

    def when(self, condition: Callable[[], bool], callback: Callable[[], None]) -> None:
        """Call `callback` once `condition()` holds (checked after every batch of moves)."""
        if condition():
            callback()
        else:
            self._waiters.append((condition, callback))

    # -- reload --------------------------------------------------------------------

    def reload(self, new: Config, log_files: bool = False) -> dict[str, list[str]]:
        """Apply a validated configuration: add, remove and restart only what changed.

        All of it or nothing (supervise/reconfigure.py); ConfigInvalid says why not.
        """
        from roost.supervise import reconfigure  # noqa: PLC0415 - lazy (memory): reloads only

        return reconfigure.apply(self, new, log_files)

    def reload_service(self, name: str) -> str | None:
        """Reload a service that is up: exec_reload, else reload_signal; None, or why not."""
        rt = self.services[name]
        m = rt.machine
        if m.state != machine.UP:
            return f"{name} is {m.state}, not up"
        if rt.command is not None:
            return f"{name} is running its {m.step} already"
        if rt.config.exec_reload:
            self._event(rt, m.reload(self.loop.now()))
            return None
        if rt.config.reload_signal is not None:
            return None if self.send_signal(name, rt.config.reload_signal) else \
                f"{name} has no main process to signal"
        return f"{name} has neither exec_reload nor reload_signal"

    # -- carrying out moves ----------------------------------------------------------

    def _event(self, rt: Runtime, asked: list[Action]) -> None:
        """A machine event's actions: carry them out, with whatever they let the order do."""
        self._apply(self.order.settle(rt.name, asked, self.loop.now()))

    def _apply(self, moves: list[Move]) -> None:
        changed = False
        for name, action in moves:
            rt = self.services.get(name)
            if rt is None:
                continue
            if isinstance(action, Changed):
                changed = True
                self._announce(rt)
                self._follow(rt)
            elif isinstance(action, actions.Spawn):
                self._spawn(rt)
            elif isinstance(action, actions.RunCommand):
                self.around().run(rt, action.key, action.index)
            elif isinstance(action, actions.KillCommand):
                self.around().kill(rt, action.signal)
            elif isinstance(action, actions.Check):
                self._check(rt)
            elif isinstance(action, actions.Kill):
                self._kill(rt, action.signal, action.main_only)
            elif isinstance(action, actions.Arm):
                self._arm(rt, action.name, action.delay)
            elif isinstance(action, actions.Disarm):
                timer = rt.timers.pop(action.name, None)
                if timer is not None:
                    timer.cancel()
            elif isinstance(action, actions.FindMain):
                self.daemons.find_main(rt)
        if self._waiters:
            waiting, self._waiters = self._waiters, []
            for condition, callback in waiting:
                if condition():
                    callback()
                else:
                    self._waiters.append((condition, callback))
        if changed and self.on_change is not None:
            self.on_change()

    def _announce(self, rt: Runtime) -> None:
        m = rt.machine
        text = m.state + (f" (pid {m.pid})" if m.state == machine.UP and m.pid else "")
        console.say(f"{rt.name}: {text}" + (f": {m.reason}" if m.reason else ""))
        for watcher in self.watchers:
            watcher(rt)

    def _follow(self, rt: Runtime) -> None:
        """What follows a service's state from outside: polls, health checks, stored fds."""
        if rt.machine.state in _STOPPED and (closed := rt.drop_held()):
            # Kept across restarts only: a service stopped (or given up) starts afresh.
            console.say(f"{rt.name}: closed {closed}")
        if rt.config.directories and rt.machine.state in _STOPPED:
            command.remove_runtime_directories(rt.config, self._base_env)
        if rt.poll is not None and rt.machine.state != machine.STARTING:
            rt.poll.cancel()
            rt.poll = None
        if rt.health is not None or rt.config.health is not None:
            if self._health is None:
                from roost.supervise.health import Checks  # noqa: PLC0415 - lazy (memory): only services with `health` need it

                self._health = Checks(self.loop, self.reaper, self._spawner, self._base_env,
                                      self._event, pdeathsig=self.pdeathsig, nofile=self.nofile)
            self._health.follow(rt)

    def _arm(self, rt: Runtime, name: str, delay: float) -> None:
        old = rt.timers.pop(name, None)
        if old is not None:
            old.cancel()

        def fire() -> None:
            rt.timers.pop(name, None)
            self._event(rt, rt.machine.timer(name, self.loop.now()))

        rt.timers[name] = self.loop.call_later(delay, fire)

    def around(self) -> Around:
        """What runs the commands around the main ones, made when the first is run."""
        if self._around is None:
            from roost.supervise.around import Around  # noqa: PLC0415 - lazy (memory): services with exec_* commands only

            self._around = Around(self.loop, self.reaper, self._spawner, self._base_env,
                                  self._event, self._ended, pdeathsig=self.pdeathsig,
                                  nofile=self.nofile)
        return self._around

    def _check(self, rt: Runtime) -> None:
        from roost.supervise.conditions import unmet  # noqa: PLC0415 - lazy (start-up): services with conditions only

        now = self.loop.now()
        moved = unmet(rt.machine, now)
        self._event(rt, rt.machine.checked(now) if moved is None else moved)

    def _spawn(self, rt: Runtime) -> None:
        cfg = rt.config
        now = self.loop.now()
        if not any(getattr(cfg, key) for key in FIRST):
            rt.begin_run()  # else the first command began it
        ready_fd = None
        try:
            if cfg.ready_fd is not None:
                self._close_notify_fd(rt)
                rt.notify_fd = NotificationFd(self.loop, lambda: self._ready(rt),
                                              any_byte=cfg.ready.startswith("pipevar:"))
                ready_fd = rt.notify_fd.write_fd
            cmd = command.build(
                cfg, self._base_env, log_fds=rt.log.fds(cfg.stderr == "stdout"), ready_fd=ready_fd,
                notify_socket=rt.notify_sock.address if rt.notify_sock is not None else None,
                pdeathsig=self.pdeathsig, nofile=self.nofile)
            cmd.cgroup = self.tracker.placement(cfg)
            command.make_directories(cfg, cmd, self._base_env)
            command.hand_over(cmd, self._passed(rt))  # its sockets may be in those directories
        except (OSError, ValueError) as exc:
            self._close_notify_fd(rt)
            self._event(rt, rt.machine.spawn_failed(f"cannot start: {exc}", now))
            return
        self.daemons.before_spawn(rt)
        try:
            child = self._spawner(cmd)
        except (SpawnError, OSError) as exc:
            self._close_notify_fd(rt)
            why = f"cannot start: {exc.strerror}" if isinstance(exc, OSError) else str(exc)
            self._event(rt, rt.machine.spawn_failed(why, now))
            return
        if rt.notify_fd is not None:
            rt.notify_fd.spawned()
        if cfg.ready.startswith(("file:", "tcp:")):
            # Only the service's own user, or root, can make its file.
            owners = {0, os.geteuid() if cmd.uid is None else cmd.uid}
            from roost.supervise.probes import Poll  # noqa: PLC0415 - lazy (memory): file: and tcp: readiness only

            rt.poll = Poll(self.loop, cfg.ready, owners, lambda: self._ready(rt))
        rt.child = child
        self.tracker.unwatch_main(rt.name)
        self.tracker.started(rt.name, child.pid, forking=cfg.type == "forking")
        self.reaper.watch(child.pid, lambda pid, status: self._exited(rt, child, status))
        self.loop.watch(child.exec_fd, READ, lambda _ev: self._exec_report(rt, child))
        self._event(rt, rt.machine.spawned(child.pid, now))
        console.debug(f"{cfg.name}: spawned {child.pid}")

    def _passed(self, rt: Runtime) -> list[tuple[str, int]]:
        """What the service is handed from fd 3 up: its sockets, then what it stored."""
        if not rt.config.sockets:
            return rt.fd_store
        from roost.supervise import sockets  # noqa: PLC0415 - lazy (memory): services with `sockets` only
        return [*sockets.held(rt), *rt.fd_store]

    def _close_notify_fd(self, rt: Runtime) -> None:
        if rt.notify_fd is not None:
            rt.notify_fd.close()
            rt.notify_fd = None

    def _kill(self, rt: Runtime, signum: int, main_only: bool = False) -> None:
        # Every member, through pidfds verified after opening: a recycled PID is never hit.
        for sent in (signum, _signal.SIGCONT):
            if main_only:  # kill_mode mixed or process
                self.send_signal(rt.name, sent)
            else:
                self.tracker.signal_all(rt.name, sent)
            if signum in (_signal.SIGKILL, _signal.SIGCONT):
                break  # else SIGCONT: a stopped process would keep the signal pending forever
        self._ended(rt)
        console.debug(f"{rt.name}: sent {sigs.name(signum)}")

    def _ended(self, rt: Runtime) -> None:
        """A stop was signalled, or a command ended in one: wait for the service to empty."""
        if rt.machine.state == machine.STOPPING and rt.child is None \
                and self.tracker.main_of(rt.name) is None:
            if rt.config.kill_mode == "process":  # what is left is not waited for
                self.loop.call_later(0, lambda: self._gone(rt))
                return
            # No main process left whose exit would end the stop: its last process will.
            self.tracker.when_empty(rt.name, lambda: self._gone(rt))

    # -- what the system reports -------------------------------------------------------

    def _exec_report(self, rt: Runtime, child: Child) -> None:
        fd = child.exec_fd
        # Unwatched before exec_result() closes it (docs/DESIGN.md, "Descriptor reuse").
        self.loop.unwatch(fd)
        known, error = child.exec_result()
        if not known:
            self.loop.watch(fd, READ, lambda _ev: self._exec_report(rt, child))
            return
        if error is not None:
            rt.exec_error = error
        elif rt.child is child:
            self._event(rt, rt.machine.exec_done(self.loop.now()))

    def _ready(self, rt: Runtime) -> None:
        self._event(rt, rt.machine.ready(self.loop.now()))

    def _exited(self, rt: Runtime, child: Child, status: ExitStatus) -> None:
        if child.exec_fd >= 0:
            self.loop.unwatch(child.exec_fd)  # before it is closed: see _exec_report
            known, error = child.exec_result()
            if known and error:
                rt.exec_error = error
        child.close()
        if rt.child is child:
            rt.child = None
        self._close_notify_fd(rt)
        self.tracker.exited(rt.name, child.pid)
        leftovers = rt.left_behind(self.tracker)
        if not leftovers:
            rt.log.settle()
        if rt.machine.pid != child.pid:
            # MAINPID= named another main process: this exit is not the service's.
            console.debug(f"{rt.name}: {child.pid} (main process no more) {status.describe()}")
            if not leftovers:
                self._gone(rt)
            return
        now = self.loop.now()
        if rt.exec_error is not None and not leftovers:
            # The command never ran: a failure to start, not a crash to restart.
            self._event(rt, rt.machine.spawn_failed(f"cannot start: {rt.exec_error}", now))
        else:
            detail = f"{status.describe()}: {rt.exec_error}" if rt.exec_error else None
            self._event(rt, rt.machine.exited(status, now, leftovers, detail))
        if leftovers and rt.machine.state == machine.STOPPING:
            self.tracker.when_empty(rt.name, lambda: self._gone(rt))

    def _gone(self, rt: Runtime) -> None:
        m = rt.machine
        rt.log.settle()
        if m.pid is not None and rt.child is None and self.tracker.main_of(rt.name) is None:
            # The main process went with everything else, its exit unseen: all is gone.
            self._event(rt, m.exited(ExitStatus(), self.loop.now(), False,
                                     f"main process {m.pid} is gone"))
            return
        self._event(rt, m.gone(self.loop.now()))

    # -- reporting -----------------------------------------------------------------

    def status(self, names: Iterable[str] | None = None) -> list[dict[str, object]]:
        """One record per service (runtime.Runtime.record); with no names, the broken too."""
        now = self.loop.now()
        records = [self.services[name].record(now, self.tracker.means_for(name))
                   if name in self.services else broken_record(name, self.broken[name])
                   for name in (list(names) if names else list(self.services))]
        if not names:
            records += [broken_record(name, reason) for name, reason in self.broken.items()]
        return records

