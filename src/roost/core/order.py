"""Dependency order: which service may start or stop now, and what is settled.

Every service's machine lives here, with the graph between them. Requests (start,
stop, restart) change what is wanted; then each machine is moved as soon as its
turn comes, and each move wakes the services that were waiting on it. Nothing
here touches a process: every call returns the moves to carry out, as
(service, action) pairs in order, and a Changed move wherever a machine left a
state (the supervisor announces it there).

The rules, one sentence of docs/supervisor.md each (tests/unit/test_order.py
checks them against random graphs and random process behaviour):

- A service starts only once every service it requires is ready (up, or done for
  a oneshot), and once everything it wants has settled: not starting or stopping,
  and not about to start. A wanted service that is up, failed, down by choice, or
  held by a failed requirement of its own does not hold it back.
- Starting a service starts what it requires, transitively; a failed requirement
  is retried.
- Stopping a service stops everything that requires it, transitively; a service
  stops only after everything ordered after it (requires or wants) that stops too
  has stopped.
- When a requirement fails, what requires it is held: stopped if it runs, still
  wanted, started again once the requirement is up.
- A restart stops the service and every running service that requires it (what
  waits, in backoff or held, stays wanted); they all start again once every one of
  them is down.

A change wakes its neighbours through a work list, not by recursion: a chain of a
thousand services settles in one call without growing the stack.
"""

from __future__ import annotations

from collections import deque

from roost.core import graph
from roost.core.actions import Step
from roost.core.machine import (
    BACKOFF,
    DONE,
    DOWN,
    FAILED,
    READY,
    RUNNING,
    STARTING,
    STOPPING,
    UP,
    Machine,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from roost.core.actions import Action
    from roost.core.model import ServiceConfig


class Changed(Step):
    """The service left state `before`; its machine holds the new one."""

    __slots__ = ("before",)

    def __init__(self, before: str):
        self.before = before


Move = tuple[str, "Action | Changed"]


class Order:
    """Every service's machine, and the dependency order that decides when each may move."""

    def __init__(self, configs: Iterable[ServiceConfig], now: float,
                 rng: Callable[[], float]):
        self._rng = rng
        self.machines: dict[str, Machine] = {}
        # The state each machine was in when its last change was settled.
        self._seen: dict[str, str] = {}
        # How many services are starting, up or stopping, as last settled: "all down"
        # is asked after every change during a shutdown, so it must not walk them all.
        self.running = 0
        # Groups restarted together: each starts again once all of it is down.
        self._restarts: list[set[str]] = []
        self._queue: deque[str] = deque()
        self._queued: set[str] = set()
        self._graph: _Graph | None = None
        for config in configs:
            self.add(config, now)

    # -- the configuration -----------------------------------------------------------

    def add(self, config: ServiceConfig, now: float) -> Machine:
        """A new service, down and not wanted."""
        machine = Machine(config, now, self._rng)
        self.machines[config.name] = machine
        self._seen[config.name] = machine.state
        self._graph = None
        return machine

    def remove(self, name: str) -> None:
        """Forget a service (stopped first: see settled_down)."""
        del self.machines[name]
        if self._seen.pop(name) in RUNNING:
            self.running -= 1
        self._graph = None

    def reconfigure(self, config: ServiceConfig) -> None:
        """A service's definition changed; the graph follows it."""
        self.machines[config.name].reconfigure(config)
        self._graph = None

    @property
    def _edges(self) -> _Graph:
        if self._graph is None:
            self._graph = _Graph({n: m.config for n, m in self.machines.items()})
        return self._graph

    # -- requests --------------------------------------------------------------------

    def start_all(self, now: float) -> list[Move]:
        """Want every autostart service up."""
        return self.start([n for n, m in self.machines.items() if m.config.autostart], now,
                          explicit=False)

    def start(self, names: Iterable[str], now: float, explicit: bool = True) -> list[Move]:
        """Want `names` and what they require up; each starts as soon as its turn comes.

        `explicit`: the names were asked for by name, so a finished oneshot among them
        runs again and a failure's count is forgotten (a failed requirement is always
        retried).
        """
        names = list(names)
        asked = set(names)
        targets = graph.closure(names, self._edges.requires)
        # A start overrides a restart under way: what it wants up starts in its turn, and
        # is not started again by the restart once it is down later.
        self._restarts = [group - targets for group in self._restarts if group - targets]
        for name in targets:
            self.machines[name].want_up(now, fresh=explicit and name in asked)
        moves: list[Move] = []
        # A failed or finished service wanted again is down now: announced like any change.
        for name in sorted(targets):
            self._settle(name, now, moves)
        self._enqueue(sorted(targets))
        # A service wanted again no longer holds up the stop of what it is ordered after.
        after = {d for n in targets for d in self.machines[n].config.after}
        self._enqueue(sorted(after - targets))
        self._run(now, moves)
        return moves

    def stop(self, names: Iterable[str], now: float, reason: str = "stopped") -> list[Move]:
        """Want `names` and everything that requires them down; they stop in reverse order."""
        targets: set[str] = set()
        for name in names:
            targets |= {name} | self.requirers(name)
        # A stop overrides a restart under way: what it stops does not start again.
        self._restarts = [group - targets for group in self._restarts if group - targets]
        moves: list[Move] = []
        # Every want changes before any machine moves: a move wakes its neighbours,
        # which must already see the whole request.
        for name in sorted(targets):
            moves.extend((name, a) for a in self.machines[name].want_down(now, reason))
        for name in sorted(targets):
            self._settle(name, now, moves)
        self._enqueue(sorted(targets))
        # A service down and no longer wanted has settled, even when its state did not
        # change: what wants it need wait no longer.
        dependents = self._edges.dependents
        self._enqueue(sorted({d for n in targets for d in dependents.get(n, ())} - targets))
        self._run(now, moves)
        return moves

    def stop_all(self, now: float, reason: str = "shutting down") -> list[Move]:
        """Want every service down."""
        return self.stop(list(self.machines), now, reason)

    def restart(self, names: Iterable[str], now: float) -> list[Move]:
        """Stop `names` (and what runs requiring them), then start them all again."""
        names = list(names)
        group = set(names)
        for name in names:
            # What requires them and is wanted: what runs stops first and starts again
            # after; what waits (backoff, held) stays wanted; a finished oneshot runs again
            # after them. One on its way down by request stays down.
            group |= {n for n in self.requirers(name) if self.machines[n].want}
        # A machine restarts on its own only if wanted, its stop's turn has come (nothing
        # ordered after it is on its way down) and what it requires is ready to see it
        # start again; otherwise it stops in order, and starts in order, as a group.
        if group == set(names) and all(
                self.machines[n].want and self.why_not_stop(n) is None
                and all(self.machines[d].state in READY for d in self.machines[n].config.requires)
                for n in names if self.machines[n].state in (STARTING, UP)):
            moves: list[Move] = []
            for name in names:
                machine = self.machines[name]
                if machine.state in (STARTING, UP):
                    self._move(name, machine.restart(now), now, moves)
                    self._run(now, moves)
                else:
                    moves += self.start([name], now)
            return moves
        moves = self.stop(group, now, reason="restarting")
        self._restarts.append(group)
        self._run(now, moves)
        return moves

    # -- what the machines did ----------------------------------------------------------

    def settle(self, name: str, actions: list[Action], now: float) -> list[Move]:
        """A machine moved by an event of its own: its actions, then what its move allows."""
        moves: list[Move] = [(name, a) for a in actions]
        if name in self.machines:
            self._settle(name, now, moves)
            self._run(now, moves)
        return moves

    # -- the rules -----------------------------------------------------------------------

    def requirers(self, name: str) -> set[str]:
        """Services that require `name`, transitively."""
        return graph.closure([name], self._edges.requiring) - {name}

    def blocked(self, name: str) -> bool:
        """True if something `name` requires, directly or further down, has failed."""
        return self._failure_below(name) is not None

    def why_not_start(self, name: str) -> str | None:
        """None if wanted `name` may start now, else what it waits for."""
        config = self.machines[name].config
        # A failure further down holds it too, even behind a requirement still ready (a
        # finished oneshot).
        failed = self._failure_below(name)
        if failed is not None:
            return f"requirement {failed} failed"
        for dep in config.requires:
            other = self.machines[dep]
            if other.state not in READY:
                return f"waiting for {dep}"
        for dep in config.wants:
            other = self.machines[dep]
            if other.state in (STARTING, STOPPING, BACKOFF) or (
                    other.want and other.state == DOWN and not self.blocked(dep)):
                return f"waiting for {dep}"
        return None

    def why_not_stop(self, name: str) -> str | None:
        """None if unwanted (or held) `name` may stop now, else what it waits for."""
        for dependent in sorted(self._edges.dependents.get(name, ())):
            other = self.machines.get(dependent)
            # Only a dependent that is itself on its way down (unwanted, or held by a
            # failure) holds this one up.
            if other is not None and other.state in RUNNING and (
                    not other.want or self.blocked(dependent)):
                return f"waiting for {dependent} to stop"
        return None

    def settled_up(self, names: Iterable[str]) -> bool:
        """True once each of `names` got as far up as it will: a start has nothing left to do."""
        # Not wanted (yet): a restart still waiting for what requires it to stop first.
        return all(self.machines[name].want and self.at_rest(name) for name in names)

    def at_rest(self, name: str) -> bool:
        """True if `name` is going nowhere: not starting, stopping, backing off or due to start."""
        machine = self.machines.get(name)
        if machine is None:
            return True
        if machine.state in (STARTING, STOPPING, BACKOFF):
            return False
        return not (machine.want and machine.state == DOWN and not self.blocked(name))

    def settled_down(self, names: Iterable[str]) -> bool:
        """True once none of `names` (that still exist) has a process."""
        return all(self.machines[n].state not in RUNNING for n in names if n in self.machines)

    def ready_or_failed(self, names: Iterable[str]) -> bool:
        """True once each of `names` is ready or has failed: waiting on them is over."""
        return all(self.machines[n].state in READY or self.machines[n].state == FAILED
                   for n in names)

    def all_down(self) -> bool:
        """True when no service has a process (as of the last settled change)."""
        return self.running == 0

    # -- moving ------------------------------------------------------------------------

    def _enqueue(self, names: Iterable[str]) -> None:
        for name in names:
            if name not in self._queued:
                self._queued.add(name)
                self._queue.append(name)

    def _run(self, now: float, moves: list[Move]) -> None:
        """Move each queued service toward what is wanted of it, if its turn has come."""
        while self._queue:
            name = self._queue.popleft()
            self._queued.discard(name)
            machine = self.machines.get(name)
            if machine is None:
                continue
            if machine.want:
                failed = self._failure_below(name)
                if failed is not None:
                    # Held by a failure: what runs stops in its turn, as a stop does; what
                    # does not (down, backoff, done, stopping) is held at once.
                    if machine.state not in (STARTING, UP) or self.why_not_stop(name) is None:
                        if machine.state == DONE:
                            # A finished oneshot runs again once the requirement is back,
                            # and what requires it waits for that.
                            machine.want_up(now, fresh=True)
                        self._move(name, machine.hold(now, f"requirement {failed} failed"),
                                   now, moves)
                    continue
                if machine.state != DOWN:
                    continue
                why = self.why_not_start(name)
                if why is None:
                    self._move(name, machine.start(now), now, moves)
                else:
                    machine.wait_for(now, why)
            elif machine.state in (STARTING, UP):
                why = self.why_not_stop(name)
                if why is None:
                    self._move(name, machine.stop(now), now, moves)
                else:
                    machine.wait_for(now, why)
        self._restart_due(now, moves)

    def _move(self, name: str, actions: list[Action], now: float, moves: list[Move]) -> None:
        moves.extend((name, a) for a in actions)
        self._settle(name, now, moves)

    def _settle(self, name: str, now: float, moves: list[Move]) -> None:
        """Notice a machine's change once, and queue whoever waits on it."""
        machine = self.machines[name]
        before = self._seen[name]
        if machine.state == before:
            return
        self._seen[name] = machine.state
        self.running += (machine.state in RUNNING) - (before in RUNNING)
        moves.append((name, Changed(before)))
        edges = self._edges
        # Dependents may now start; or, when it stopped, what it was ordered after may stop.
        self._enqueue(sorted(edges.dependents.get(name, ())))
        self._enqueue(machine.config.after)
        if machine.want:
            # Held, or asked up again while it stopped: its own turn may have come. Or
            # held while it moved on its own (a crash into backoff, a oneshot done).
            self._enqueue([name])
        if machine.state == FAILED:
            # What requires it is held, in its turn (_run): queued here, as each requires
            # one of these. A service that only wants one of these, which now cannot
            # start, need wait no longer.
            held = self.requirers(name) | {name}
            self._enqueue(sorted({d for n in held for d in edges.dependents.get(n, ())}))

    def _failure_below(self, name: str) -> str | None:
        """The first failed service that `name` requires, directly or further down."""
        below = graph.closure(self.machines[name].config.requires, self._edges.requires)
        for dep in sorted(below):
            if self.machines[dep].state == FAILED:
                return dep
        return None

    def _restart_due(self, now: float, moves: list[Move]) -> None:
        if not self._restarts:
            return
        due = [group for group in self._restarts if self.settled_down(group)]
        if not due:
            return
        self._restarts = [group for group in self._restarts if group not in due]
        for group in due:
            moves += self.start([n for n in group if n in self.machines], now)


class _Graph:
    """The edges of a configuration, inverted and cached until it changes."""

    __slots__ = ("dependents", "requires", "requiring")

    def __init__(self, configs: dict[str, ServiceConfig]):
        self.requires = {name: c.requires for name, c in configs.items()}
        self.dependents = graph.dependents({name: c.after for name, c in configs.items()})
        self.requiring = graph.dependents(self.requires)
