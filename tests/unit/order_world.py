"""A world without processes, for tests/unit/test_order.py: it plays the supervisor's part.

It carries out an Order's moves as the supervisor would (a Spawn gives the service a
fake pid, a Kill marks its process signalled, Arm and Disarm keep a timer table), and
turns what its fake processes do (ready, exit, a timer that fires) into machine events
fed back through `Order.settle`. The clock is a number the test moves; the jitter's
randomness is fixed.

While it runs it checks the rules of docs/supervisor.md's Dependencies section at the
moment each applies (see Watched): a breach raises AssertionError out of the Order call
that made it, so hypothesis shrinks to the request or event at fault.
"""

from __future__ import annotations

from roost.core import graph
from roost.core.actions import Arm, Disarm, Kill, Spawn
from roost.core.exits import ExitStatus
from roost.core.machine import (
    BACKOFF,
    DONE,
    DOWN,
    FAILED,
    READY,
    RUNNING,
    STARTING,
    STOPPING,
    T_BACKOFF,
    UP,
    Machine,
)
from roost.core.model import ServiceConfig
from roost.core.order import Changed, Order

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from roost.core.actions import Action
    from roost.core.order import Move

EXIT0 = ExitStatus(code=0)
EXIT1 = ExitStatus(code=1)
TERMED = ExitStatus(signal=15)
KILLED = ExitStatus(signal=9)


def service(name: str, *, type: str = "simple", requires: Iterable[str] = (),
            wants: Iterable[str] = (), **values: object) -> ServiceConfig:
    """A service definition as the config reader would give it."""
    cfg = ServiceConfig(name, f"/etc/roost/{name}.toml", [name])
    cfg.type = type
    cfg.ready = "exit" if type == "oneshot" else "exec"
    cfg.requires = list(requires)
    cfg.wants = list(wants)
    for key, value in values.items():
        setattr(cfg, key, value)
    return cfg


class Proc:
    """A fake process: its pid and the signals it was sent."""

    __slots__ = ("pid", "signals")

    def __init__(self, pid: int):
        self.pid = pid
        self.signals: list[int] = []


class Watched(Machine):
    """A machine that checks the order's rules each time the order moves it.

    The order starts a service only through `start` and stops one only through `stop`,
    or `hold` when a requirement failed (a machine's own moves, a restart delay that ran
    out or a restart after a stop, go through none of them): these are the moments at
    which docs/supervisor.md's sentences apply, checked here against the states of the
    other machines as they are then.
    """

    world: World

    def start(self, now: float) -> list[Action]:
        if self.state in (DOWN, DONE, FAILED, BACKOFF):
            self.world.check_start(self.config.name)
        return super().start(now)

    def stop(self, now: float, reason: str | None = None) -> list[Action]:
        if self.state in (STARTING, UP):
            self.world.check_stop(self.config.name)
        return super().stop(now, reason)

    def hold(self, now: float, reason: str) -> list[Action]:
        if self.state in (STARTING, UP):
            self.world.check_stop(self.config.name, held=True)
        return super().hold(now, reason)


class Entry:
    """One thing the world did or saw, in order: a spawn, a signal, a change of state."""

    __slots__ = ("after", "before", "kind", "name", "running", "step")

    def __init__(self, step: int, name: str, kind: str, before: str = "", after: str = "",
                 running: frozenset[str] = frozenset()):
        self.step = step
        self.name = name
        self.kind = kind
        self.before = before
        self.after = after
        # For a spawn: the services that had a process at that moment.
        self.running = running

    def __repr__(self) -> str:
        if self.kind == "changed":
            return f"{self.name}: {self.before} -> {self.after}"
        return f"{self.name}: {self.kind}"


class World:
    """An Order, its fake processes and timers, a fake clock, and the rules checked."""

    def __init__(self, configs: Iterable[ServiceConfig], *, checks: bool = True):
        configs = list(configs)
        self.now = 0.0
        self.configs = {c.name: c for c in configs}
        self.order = Order(configs, self.now, lambda: 0.5)
        for cfg in configs:
            watched = Watched(cfg, self.now, lambda: 0.5)
            watched.world = self
            self.order.machines[cfg.name] = watched
        self.checks = checks
        self.requires = {c.name: list(c.requires) for c in configs}
        self.requiring = graph.dependents(self.requires)
        # Ordered after a service: what requires or wants it.
        self.after_it = graph.dependents({c.name: c.after for c in configs})
        self.procs: dict[str, Proc] = {}
        self.timers: dict[tuple[str, str], float] = {}
        # Stopping services with no process left: the supervisor would report them gone.
        self.gone: list[str] = []
        # The state of each service as the moves announced it (Changed).
        self.shown = {c.name: DOWN for c in configs}
        self.log: list[Entry] = []
        self.step = 0
        self._pid = 100

    # -- looking -----------------------------------------------------------------------

    def m(self, name: str) -> Machine:
        return self.order.machines[name]

    def state(self, name: str) -> str:
        return self.order.machines[name].state

    def states(self) -> dict[str, str]:
        return {n: m.state for n, m in self.order.machines.items()}

    def wants(self) -> dict[str, bool]:
        return {n: m.want for n, m in self.order.machines.items()}

    def requirers(self, name: str) -> set[str]:
        """What requires `name`, transitively (from the configs, not from the order)."""
        return graph.closure([name], self.requiring) - {name}

    def needs(self, name: str) -> set[str]:
        """What `name` requires, transitively."""
        return graph.closure([name], self.requires) - {name}

    def held(self, name: str) -> bool:
        """Something `name` requires, directly or further down, has failed."""
        return any(self.state(dep) == FAILED for dep in self.needs(name))

    def settled(self, name: str) -> bool:
        """docs: a wanted service that is up (or done), failed, down by choice, or held by
        a failed requirement of its own does not hold back what wants it."""
        m = self.m(name)
        return (m.state in READY or m.state == FAILED
                or (m.state == DOWN and (not m.want or self.held(name))))

    def entries(self, since: int, kind: str | None = None) -> list[Entry]:
        return [e for e in self.log[since:] if kind is None or e.kind == kind]

    # -- the rules, at the moment the order moves a machine ----------------------------

    def check_start(self, name: str) -> None:
        if not self.checks:
            return
        cfg = self.configs[name]
        for dep in cfg.requires:
            # docs: a service starts only once every service it requires is ready.
            assert self.state(dep) in READY, (
                f"{name} started while its requirement {dep} is {self.state(dep)}")
        for dep in cfg.wants:
            # docs: a service starts once everything it wants has settled.
            assert self.settled(dep), (
                f"{name} started while {dep}, which it wants, is {self.state(dep)}"
                f" (wanted: {self.m(dep).want})")

    def stopping(self, name: str) -> bool:
        """On its way down, or to be: not wanted, or held by a failed requirement."""
        return not self.m(name).want or self.held(name)

    def check_stop(self, name: str, held: bool = False) -> None:
        if not self.checks:
            return
        for dependent in sorted(self.after_it.get(name, ())):
            other = self.m(dependent)
            # docs: a service stops only after everything ordered after it (requires or
            # wants) that stops too has stopped.
            assert not self.stopping(dependent) or other.state not in RUNNING, (
                f"{name} stopped while {dependent}, ordered after it and stopping too, "
                f"is {other.state}")
        if held:
            # docs: when a requirement ends failed, what requires it is stopped (or held).
            assert self.m(name).want and self.held(name), f"{name} held for nothing"
            return
        for dependent in sorted(self.requirers(name)):
            # docs: stopping a service stops everything that requires it, first.
            assert not self.m(dependent).want, (
                f"{name} stopped while {dependent}, which requires it, is still wanted")

    # -- carrying out moves ------------------------------------------------------------

    def apply(self, moves: list[Move], own: int = 0) -> None:
        """Carry out `moves` in order; the first `own` are the moving machine's own actions."""
        # The state each Changed leads to: the next Changed's `before`, or the state now.
        after: dict[int, str] = {}
        last: dict[str, int] = {}
        for i, (name, action) in enumerate(moves):
            if isinstance(action, Changed):
                if name in last:
                    after[last[name]] = action.before
                last[name] = i
        for name, i in last.items():
            after[i] = self.state(name)
        for i, (name, action) in enumerate(moves):
            if isinstance(action, Changed):
                # Each change is announced from the state the last one announced.
                assert action.before == self.shown[name], (
                    f"{name}: Changed({action.before!r}) after {self.shown[name]!r} was shown")
                self.shown[name] = after[i]
                self.log.append(Entry(self.step, name, "changed", action.before, after[i]))
            elif isinstance(action, Spawn):
                # Never two processes of one service.
                assert name not in self.procs, f"{name} spawned while its process runs"
                self.log.append(Entry(self.step, name, "spawn",
                                      running=frozenset(self.procs)))
                self._pid += 1
                self.procs[name] = Proc(self._pid)
                self.settle(name, self.m(name).spawned(self._pid, self.now))
            elif isinstance(action, Kill):
                self.log.append(Entry(self.step, name, "kill", after=str(action.signal)))
                proc = self.procs.get(name)
                if proc is not None:
                    proc.signals.append(action.signal)
                elif self.state(name) == STOPPING and name not in self.gone:
                    self.gone.append(name)
            elif isinstance(action, Arm):
                self.timers[name, action.name] = self.now + action.delay
            elif isinstance(action, Disarm):
                self.timers.pop((name, action.name), None)
            else:
                raise AssertionError(f"unexpected move {name}: {action!r}")

    def settle(self, name: str, actions: list[Action]) -> None:
        """A machine moved by an event of its own: through the order, then carried out."""
        self.apply(self.order.settle(name, actions, self.now), own=len(actions))

    # -- requests ----------------------------------------------------------------------

    def start(self, names: Iterable[str]) -> None:
        self.apply(self.order.start(list(names), self.now))

    def stop(self, names: Iterable[str]) -> None:
        self.apply(self.order.stop(list(names), self.now))

    def restart(self, names: Iterable[str]) -> None:
        self.apply(self.order.restart(list(names), self.now))

    def start_all(self) -> None:
        self.apply(self.order.start_all(self.now))

    def stop_all(self) -> None:
        self.apply(self.order.stop_all(self.now))

    # -- what the processes do ----------------------------------------------------------

    def ready(self, name: str) -> None:
        """The process reports ready in its own way: exec done, a newline, or a oneshot's exit 0."""
        m = self.m(name)
        if m.config.ready == "exit":
            self.exit(name, EXIT0)
        elif m.config.ready == "exec":
            self.settle(name, m.exec_done(self.now))
        else:
            self.settle(name, m.ready(self.now))

    def exit(self, name: str, status: ExitStatus) -> None:
        """The service's process ends with `status`, leaving nothing behind."""
        del self.procs[name]
        self.settle(name, self.m(name).exited(status, self.now))

    def stopped(self, name: str) -> None:
        """A signalled process dies of its signal."""
        signal = self.procs[name].signals[-1]
        self.exit(name, KILLED if signal == 9 else TERMED)

    def fire(self, name: str, timer: str) -> None:
        """Timer `timer` of `name` fires: the clock moves to it."""
        due = self.timers.pop((name, timer))
        self.now = max(self.now, due)
        self.settle(name, self.m(name).timer(timer, self.now))

    def report_gone(self, name: str) -> None:
        self.gone.remove(name)
        self.settle(name, self.m(name).gone(self.now))

    # -- whole runs ----------------------------------------------------------------------

    def benign(self) -> list[tuple[str, str]]:
        """What would happen next if every process behaved: readiness, stops, restarts."""
        options: list[tuple[str, str]] = []
        for name, proc in sorted(self.procs.items()):
            if proc.signals:
                options.append(("stopped", name))
            elif self.state(name) == STARTING:
                options.append(("ready", name))
        options += [("fire", name) for (name, timer) in sorted(self.timers)
                    if timer == T_BACKOFF]
        options += [("gone", name) for name in self.gone]
        return options

    def do(self, option: tuple[str, str]) -> None:
        kind, name = option
        if kind == "stopped":
            self.stopped(name)
        elif kind == "ready":
            self.ready(name)
        elif kind == "fire":
            self.fire(name, T_BACKOFF)
        else:
            self.report_gone(name)

    def drain(self, choose: Callable[[int], int] = lambda n: 0, limit: int = 100_000) -> None:
        """Let every process behave until nothing more happens, in the order `choose` picks."""
        for _ in range(limit):
            options = self.benign()
            if not options:
                return
            self.do(options[choose(len(options))])
            self.now += 0.01
        raise AssertionError("the world did not settle")
