"""The dependency order (core/order.py) against docs/supervisor.md's Dependencies section.

A world without processes (tests/unit/order_world.py) carries out the order's moves and
feeds its fake processes' events back. Hypothesis draws acyclic graphs of `requires` and
`wants` among up to eight services of random types and restart policies, and random
interleavings of requests (start, stop, restart) and process behaviour (ready, a crash,
a clean exit, a slow stop, a timer). Each docs sentence is checked where it applies:

- at the moment the order starts or stops a machine (order_world.Watched): what it
  requires is ready, what it wants has settled, what is ordered after it and stops too
  has stopped, what requires it is no longer wanted;
- after every request or event (check_step): wants and states as each request and each
  failure leave them, no service left waiting on nothing, the order's counts and
  queries agree with the states and with the processes;
- once the world has nothing left to do (check_settled): every wanted service got as
  far up as it can, and after a stop of everything, nothing runs.
"""

from __future__ import annotations

import time

from hypothesis import given, note, settings
from hypothesis import strategies as st

from roost.core.actions import Kill, Spawn
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
)
from roost.core.model import RESTART_POLICIES
from tests.unit.order_world import EXIT0, EXIT1, TERMED, World, service

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from roost.core.model import ServiceConfig

NAMES = ("api", "cache", "db", "log", "mq", "net", "web", "worker")
SETTINGS = settings(max_examples=200, deadline=None)


# -- strategies --------------------------------------------------------------------------


@st.composite
def graphs(draw: st.DrawFn, max_size: int = 8) -> list[ServiceConfig]:
    """1 to `max_size` services, each requiring or wanting only services drawn before it
    (acyclic), named in a random order (so that name order is not start order)."""
    n = draw(st.integers(1, max_size))
    names = draw(st.permutations(NAMES))[:n]
    configs = []
    for i, name in enumerate(names):
        kind = draw(st.sampled_from(["simple", "simple", "oneshot"]))
        cfg = service(name, type=kind)
        if kind == "simple":
            # "fd:3": starting until the process says so; "exec": up once exec succeeded.
            cfg.ready = draw(st.sampled_from(["exec", "fd:3"]))
        cfg.restart = draw(st.sampled_from(RESTART_POLICIES))
        cfg.restart_limit = draw(st.integers(1, 3))
        cfg.autostart = draw(st.booleans())
        for other in names[:i]:
            edge = draw(st.sampled_from([None, None, "requires", "wants"]))
            if edge == "requires":
                cfg.requires.append(other)
            elif edge == "wants":
                cfg.wants.append(other)
        configs.append(cfg)
    return configs


def describe(configs: list[ServiceConfig]) -> str:
    """The graph in a line per service, for a failing example's report."""
    lines = []
    for c in configs:
        text = f"{c.name}: {c.type} ready={c.ready} restart={c.restart}/{c.restart_limit}"
        text += "" if c.autostart else " manual"
        text += f" requires={c.requires}" if c.requires else ""
        text += f" wants={c.wants}" if c.wants else ""
        lines.append(text)
    return "\n".join(lines)


def chooser(data: st.DataObject) -> Callable[[int], int]:
    return lambda n: data.draw(st.integers(0, n - 1))


# -- what holds after every step -----------------------------------------------------------


class Before:
    """The world just before a step: wants, states, and where its log stood."""

    def __init__(self, world: World):
        self.wants = world.wants()
        self.states = world.states()
        self.stopping = {n for n in world.configs if world.stopping(n)}
        self.mark = len(world.log)


def check_step(world: World, before: Before, request: str | None = None,
               names: list[str] | None = None, event: str | None = None) -> None:
    order = world.order
    states = world.states()
    wants = world.wants()
    step = world.log[before.mark:]
    became = {e.name: e.after for e in step if e.kind == "changed"}
    killed = {e.name for e in step if e.kind == "kill"}

    # Every change of state was announced (a Changed move), and announced once.
    assert world.shown == states, "a change of state was not announced"
    # The order's count of running services, all_down() and settled_down() agree with the
    # states, and the states with the processes.
    running = {n for n, s in states.items() if s in RUNNING}
    assert set(world.procs) | set(world.gone) == running
    assert order.running == len(running)
    assert order.all_down() == (not world.procs and not world.gone)
    for name, state in states.items():
        assert order.settled_down([name]) == (state not in RUNNING)
        m = world.m(name)
        # settled_up: got as far up as it will (up, done, failed, or held by a failure).
        assert order.settled_up([name]) == (m.want and world.settled(name)), name
        assert order.ready_or_failed([name]) == (state in READY or state == FAILED)
        assert order.blocked(name) == world.held(name)
        # What is not wanted is down or on its way down, never waiting to restart.
        if not m.want:
            assert state in (DOWN, STARTING, UP, STOPPING), f"{name} unwanted but {state}"
        # No service is left waiting for nothing: a wanted service that is down waits for
        # something, and so does an unwanted one that still runs.
        if m.want and state == DOWN:
            assert order.why_not_start(name) is not None, f"{name} wanted, down, not started"
        if world.stopping(name) and state in (STARTING, UP):
            assert order.why_not_stop(name) is not None, (
                f"{name} {'held' if m.want else 'unwanted'}, runs, not stopped")

    if request == "start":
        assert names is not None
        for name in set(names) | {d for n in names for d in world.needs(n)}:
            # docs: starting a service starts what it requires, transitively; a failed
            # requirement is retried.
            assert wants[name], f"start {names}: {name} not wanted"
            assert states[name] != FAILED, f"start {names}: {name} still failed"
    if request == "stop":
        assert names is not None
        targets = set(names) | {r for n in names for r in world.requirers(n)}
        for name in targets:
            # docs: stopping a service stops everything that requires it, transitively.
            assert not wants[name], f"stop {names}: {name} still wanted"
            assert states[name] in (DOWN, STARTING, UP, STOPPING)
        # docs (wants): stopping a wanted service does nothing to the service that wants
        # it. Only the targets, and what was on its way down already, are signalled.
        stray = killed - targets - {n for n, w in before.wants.items() if not w}
        assert not stray, f"stop {names} signalled {stray}"
    if event is not None:
        failed = {n for n, s in became.items() if s == FAILED}
        for name in failed:
            for dependent in world.requirers(name):
                if before.wants[dependent]:
                    # docs: when a requirement ends failed, what requires it is stopped
                    # (or held); it stays wanted.
                    assert wants[dependent], f"{dependent} unwanted when {name} failed"
                    # Stopped now, or once what is ordered after it has stopped.
                    assert (states[dependent] not in (STARTING, UP)
                            or order.why_not_stop(dependent) is not None), (
                        f"{dependent} still {states[dependent]} when {name} failed")
        for name in [n for n, s in became.items() if s == BACKOFF]:
            for dependent in world.requirers(name):
                # docs: a requirement that merely restarts (backoff) does not take its
                # requirers down.
                assert states[dependent] == before.states[dependent], (
                    f"{dependent} moved when {name} went into backoff")
        # docs (wants): failing a wanted service does nothing to the service that wants
        # it. An event signals its own service, and what is on its way down: unwanted or
        # held by a failed requirement, now or before the event (a restart that follows
        # may want it again, or retry its requirement, once it stopped).
        stray = {n for n in killed - {event} - before.stopping if not world.stopping(n)}
        assert not stray, f"an event of {event} signalled {stray}"


def check_settled(world: World) -> None:
    """Nothing left to happen: each wanted service got as far up as it can."""
    assert not world.benign()
    for name, m in world.order.machines.items():
        state = m.state
        assert state not in (STARTING, STOPPING, BACKOFF), f"{name} still {state}"
        if m.want and state == DOWN:
            # Down yet wanted: held by a failed requirement, or waiting on a requirement
            # nobody wants up (it exited cleanly and is not restarted) -- or on a wanted
            # service that is itself down for one of these reasons.
            assert stuck(world, name), f"{name} wanted but down: {m.reason}"
        if state == UP:
            for dep in m.config.requires:
                # Up, with no requirement failed or waiting: it is up too, or down by choice.
                assert world.state(dep) in READY or not world.m(dep).want, (
                    f"{name} up while its requirement {dep} is {world.state(dep)}")


def stuck(world: World, name: str) -> bool:
    """A wanted service that is down and cannot start until something is asked."""
    m = world.m(name)
    if not (m.want and m.state == DOWN):
        return False
    if world.held(name):
        return True
    for dep in m.config.requires:
        other = world.m(dep)
        if other.state == FAILED or not other.want or stuck(world, dep):
            return True
    return any(stuck(world, dep) for dep in m.config.wants)


# -- a random run ----------------------------------------------------------------------------


REQUESTS = ("start", "stop", "restart", "start_all", "stop_all")
STEPS = (*REQUESTS, "process", "process", "process", "process", "process", "timer", "wait")


def random_step(world: World, data: st.DataObject) -> None:
    kind = data.draw(st.sampled_from(STEPS), label="step")
    before = Before(world)
    world.step += 1
    if kind == "process" and not world.procs and not world.gone:
        kind = "start_all"
    if kind == "timer" and not world.timers:
        kind = "wait"
    if kind in ("start", "stop", "restart"):
        names = data.draw(st.lists(st.sampled_from(sorted(world.configs)), min_size=1,
                                   max_size=2, unique=True), label=kind)
        getattr(world, kind)(names)
        check_step(world, before, request=kind, names=names)
    elif kind == "start_all":
        world.start_all()
        auto = [n for n, c in world.configs.items() if c.autostart]
        check_step(world, before, request="start", names=auto)
    elif kind == "stop_all":
        world.stop_all()
        check_step(world, before, request="stop", names=sorted(world.configs))
    elif kind == "process":
        choices = sorted(world.procs) + [f"gone:{n}" for n in world.gone]
        name = data.draw(st.sampled_from(choices), label="process")
        if name.startswith("gone:"):
            name = name[5:]
            world.report_gone(name)
        else:
            proc = world.procs[name]
            what = ["crash", "exit 0"]
            if world.state(name) == STARTING and not proc.signals:
                what.append("ready")
            if proc.signals:
                what.append("stopped")
            how = data.draw(st.sampled_from(what), label=name)
            if how == "ready":
                world.ready(name)
            elif how == "stopped":
                world.stopped(name)
            else:
                world.exit(name, EXIT1 if how == "crash" else EXIT0)
        check_step(world, before, event=name)
    elif kind == "timer":
        name, timer = data.draw(st.sampled_from(sorted(world.timers)), label="timer")
        world.fire(name, timer)
        check_step(world, before, event=name)
    else:
        world.now += data.draw(st.sampled_from([0.5, 5.0, 30.0, 120.0]), label="wait")


def settle(world: World, data: st.DataObject) -> None:
    """Let the world run to rest, checking each step."""
    choose = chooser(data)
    for _ in range(10_000):
        options = world.benign()
        if not options:
            return
        option = options[choose(len(options))]
        before = Before(world)
        world.step += 1
        world.do(option)
        world.now += 0.01
        check_step(world, before, event=option[1])
    raise AssertionError("the world did not settle")


@SETTINGS
@given(configs=graphs(), data=st.data())
def test_random_requests_and_processes(configs: list[ServiceConfig], data: st.DataObject) -> None:
    note(describe(configs))
    world = World(configs)
    for _ in range(data.draw(st.integers(1, 30), label="steps")):
        random_step(world, data)

    # Everything behaves from here on: each wanted service gets as far up as it can.
    settle(world, data)
    check_settled(world)

    # docs: a failed requirement starts again, with what requires it, after a start of it.
    failed = sorted(n for n, m in world.order.machines.items() if m.state == FAILED)
    wanted = {n for n, m in world.order.machines.items() if m.want}
    if failed:
        before = Before(world)
        world.start(failed)
        check_step(world, before, request="start", names=failed)
        settle(world, data)
        check_settled(world)
        for name in failed:
            assert world.state(name) in READY or stuck(world, name)
            for dependent in world.requirers(name) & wanted:
                assert world.m(dependent).want
                assert world.state(dependent) in READY or stuck(world, dependent), (
                    f"{dependent} did not come back with {name}")

    # docs: at shutdown every service stops in reverse order (checked by Watched as each
    # stops); all_down() once no process is left (check_step).
    before = Before(world)
    world.stop_all()
    check_step(world, before, request="stop", names=sorted(world.configs))
    settle(world, data)
    assert world.order.all_down()
    assert not world.procs
    assert all(m.state == DOWN and not m.want for m in world.order.machines.values())


# -- focused properties -------------------------------------------------------------------


def up_world(configs: list[ServiceConfig], data: st.DataObject) -> World:
    """The autostart services started, and the world at rest."""
    note(describe(configs))
    world = World(configs)
    before = Before(world)
    world.start_all()
    check_step(world, before, request="start",
               names=[n for n, c in world.configs.items() if c.autostart])
    settle(world, data)
    check_settled(world)
    return world


@SETTINGS
@given(configs=graphs(), data=st.data())
def test_restart_stops_requirers_then_starts_them_after(configs: list[ServiceConfig],
                                                       data: st.DataObject) -> None:
    # docs: `roost restart db` restarts db and every running service that requires it:
    # they stop first, db restarts, then they start after it is ready. (A finished oneshot
    # that requires it runs again with them.)
    world = up_world(configs, data)
    name = data.draw(st.sampled_from(sorted(world.configs)), label="restart")
    states = world.states()
    group = {name} | {r for r in world.requirers(name) if world.m(r).want}
    mark = len(world.log)
    before = Before(world)
    world.restart([name])
    check_step(world, before)
    settle(world, data)
    check_settled(world)

    log = world.log[mark:]
    spawns = [e for e in log if e.kind == "spawn"]
    killed = {e.name for e in log if e.kind == "kill"}
    for member in group:
        if states[member] in RUNNING:
            assert member in killed, f"{member} was not stopped"
        assert world.state(member) in READY, f"{member} did not start again"
    spawned = [e.name for e in spawns if e.name in group]
    assert sorted(spawned) == sorted(group), "each of the group starts again, once"
    assert spawned[0] == name, f"{spawned[0]} started again before {name}"
    # They all start again once every one of them is down.
    first = next(e for e in spawns if e.name in group)
    assert not (first.running & group), f"{first.name} started while {first.running} ran"
    # Nothing else was stopped; what else started is what the group requires that had no
    # process (it was down, or a finished oneshot that runs again before its requirer).
    assert killed <= group
    others = {e.name for e in spawns} - group
    assert others <= {d for member in group for d in world.needs(member)}
    assert all(states[o] not in RUNNING for o in others)


@SETTINGS
@given(configs=graphs(), data=st.data())
def test_restart_keeps_what_is_wanted_wanted(configs: list[ServiceConfig],
                                             data: st.DataObject) -> None:
    # docs: a restart restarts; it asks nothing down. What waits (in backoff, or held by a
    # failed requirement: "it stays wanted") is still wanted after it, and so is what was
    # restarted.
    world = up_world(configs, data)
    for _ in range(data.draw(st.integers(0, 3), label="crashes")):
        up = sorted(n for n in world.procs if world.state(n) == UP)
        if not up:
            break
        world.exit(data.draw(st.sampled_from(up), label="crash"), EXIT1)
    names = data.draw(st.lists(st.sampled_from(sorted(world.configs)), min_size=1,
                               max_size=2, unique=True), label="restart")
    wanted = {n for n, m in world.order.machines.items() if m.want}
    before = Before(world)
    world.restart(names)
    check_step(world, before)
    settle(world, data)
    check_settled(world)
    now_wanted = {n for n, m in world.order.machines.items() if m.want}
    assert wanted | set(names) <= now_wanted, f"no longer wanted: {wanted - now_wanted}"


def one_up(world: World, data: st.DataObject, label: str) -> str | None:
    """A service that is up, drawn at random; None if none is."""
    candidates = sorted(n for n in world.procs if world.state(n) == UP)
    return data.draw(st.sampled_from(candidates), label=label) if candidates else None


@SETTINGS
@given(configs=graphs(), data=st.data())
def test_failed_requirement_holds_requirers_until_started(configs: list[ServiceConfig],
                                                          data: st.DataObject) -> None:
    # docs: when a requirement ends failed, what requires it is stopped (or held) and shows
    # `down: requirement db failed`; it stays wanted, and starts again once the requirement
    # is up again (after a `roost start db`).
    world = up_world(configs, data)
    name = one_up(world, data, "fails")
    if name is None:
        return
    world.m(name).config.restart = "never"
    wanted = {n for n, m in world.order.machines.items() if m.want}
    ready = {n for n, s in world.states().items() if s in READY}
    before = Before(world)
    world.step += 1
    world.exit(name, EXIT1)
    check_step(world, before, event=name)
    assert world.state(name) == FAILED
    settle(world, data)
    check_settled(world)
    for dependent in world.requirers(name):
        m = world.m(dependent)
        assert m.want == (dependent in wanted)
        assert m.state not in RUNNING
        if m.want and m.state == DOWN:
            assert "failed" in m.reason, f"{dependent}: {m.reason}"
    # What only wants it is not touched.
    for other in set(world.configs) - world.requirers(name) - {name}:
        if other in ready:
            assert world.state(other) in READY, f"{other} moved when {name} failed"

    before = Before(world)
    world.start([name])
    check_step(world, before, request="start", names=[name])
    settle(world, data)
    check_settled(world)
    assert world.state(name) == UP
    for dependent in world.requirers(name):
        if dependent in ready:
            assert world.state(dependent) in READY, f"{dependent} did not start again"


@SETTINGS
@given(configs=graphs(), data=st.data())
def test_requirement_in_backoff_keeps_requirers_up(configs: list[ServiceConfig],
                                                   data: st.DataObject) -> None:
    # docs: a requirement that merely restarts (backoff) does not take its requirers down.
    world = up_world(configs, data)
    name = one_up(world, data, "crashes")
    if name is None:
        return
    cfg = world.m(name).config
    cfg.restart = data.draw(st.sampled_from(["always", "on-failure"]))
    cfg.restart_limit = 10
    pids = {n: p.pid for n, p in world.procs.items()}
    before = Before(world)
    world.step += 1
    world.exit(name, EXIT1)
    check_step(world, before, event=name)
    assert world.state(name) == BACKOFF
    for dependent in world.requirers(name):
        assert world.state(dependent) == before.states[dependent]
    world.fire(name, T_BACKOFF)
    settle(world, data)
    check_settled(world)
    # Every requirer kept its process throughout.
    for dependent in world.requirers(name):
        if dependent in pids:
            assert world.procs[dependent].pid == pids[dependent]


@SETTINGS
@given(configs=graphs(), data=st.data())
def test_stop_all_stops_in_reverse_order(configs: list[ServiceConfig],
                                         data: st.DataObject) -> None:
    # docs: at shutdown every service stops in reverse order: a service stops only after
    # everything ordered after it (through requires or wants) has stopped.
    world = up_world(configs, data)
    for _ in range(data.draw(st.integers(0, 5), label="steps")):
        random_step(world, data)
    mark = len(world.log)
    before = Before(world)
    at_stop = before.states
    world.stop_all()
    check_step(world, before, request="stop", names=sorted(world.configs))
    choose = chooser(data)
    while world.benign():
        assert not world.order.all_down()
        before = Before(world)
        options = world.benign()
        option = options[choose(len(options))]
        world.do(option)
        check_step(world, before, event=option[1])
    assert world.order.all_down()
    assert not world.procs
    assert all(m.state == DOWN for m in world.order.machines.values())
    # As the world saw it: each service signalled at shutdown was signalled after the
    # last process of everything ordered after it had ended.
    log = world.log[mark:]
    signalled: dict[str, int] = {}
    for i, e in enumerate(log):
        if e.kind == "kill":
            signalled.setdefault(e.name, i)
    ended = {e.name: i for i, e in enumerate(log)
             if e.kind == "changed" and e.before in RUNNING and e.after not in RUNNING}
    for name, cfg in world.configs.items():
        for dep in cfg.after:
            if dep in signalled and at_stop[name] in RUNNING:
                assert ended[name] < signalled[dep], f"{dep} signalled before {name} ended"


# -- a long chain ---------------------------------------------------------------------------


def test_a_chain_of_a_thousand_settles_without_recursion() -> None:
    n = 1000
    names = [f"s{i:04d}" for i in range(n)]
    configs = [service(names[0])]
    configs += [service(names[i], requires=[names[i - 1]]) for i in range(1, n)]
    world = World(configs, checks=False)
    begun = time.perf_counter()

    moves = world.order.start_all(world.now)
    spawns = [name for name, action in moves if isinstance(action, Spawn)]
    assert spawns == [names[0]]
    world.apply(moves)
    assert all(world.m(name).want for name in names)
    assert world.m(names[-1]).reason == f"waiting for {names[-2]}"
    world.drain()
    assert all(world.state(name) == UP for name in names)

    # One event holds all 999 requirers: the top one stops first, then each in turn.
    world.m(names[0]).config.restart = "never"
    mark = len(world.log)
    world.exit(names[0], EXIT1)
    assert world.state(names[0]) == FAILED
    assert [e.name for e in world.entries(mark, "kill")] == [names[-1]]
    world.drain()
    assert [e.name for e in world.entries(mark, "kill")] == names[:0:-1]
    assert all(world.state(name) == DOWN and world.m(name).want for name in names[1:])
    assert world.m(names[-1]).reason == f"requirement {names[0]} failed"

    # One start brings the chain back; one stop of the root takes it all down, top first.
    world.start([names[0]])
    world.drain()
    assert all(world.state(name) == UP for name in names)
    moves = world.order.stop([names[0]], world.now)
    assert [name for name, action in moves if isinstance(action, Kill)] == [names[-1]]
    world.apply(moves)
    world.drain()
    assert world.order.all_down()
    assert time.perf_counter() - begun < 10


# -- examples --------------------------------------------------------------------------------


def db_web() -> World:
    world = World([service("db"), service("web", requires=["db"])])
    world.start_all()
    world.drain()
    assert world.states() == {"db": UP, "web": UP}
    return world


def test_start_while_stopping_starts_once_stopped() -> None:
    world = World([service("db")])
    world.start(["db"])
    world.drain()
    world.stop(["db"])
    assert world.state("db") == STOPPING
    mark = len(world.log)
    world.start(["db"])
    assert world.state("db") == STOPPING
    assert not world.entries(mark, "spawn")
    world.exit("db", TERMED)
    assert [e.name for e in world.entries(mark, "spawn")] == ["db"]
    assert world.state("db") == STARTING and world.m("db").want


def test_a_stop_during_a_restart_does_not_restart() -> None:
    world = World([service("db")])
    world.start(["db"])
    world.drain()
    world.restart(["db"])
    assert world.state("db") == STOPPING
    mark = len(world.log)
    world.stop(["db"])
    world.drain()
    assert not world.entries(mark, "spawn")
    assert world.state("db") == DOWN and not world.m("db").want


def test_a_stop_during_a_restart_with_requirers_does_not_restart() -> None:
    world = db_web()
    world.restart(["db"])
    assert world.states() == {"db": UP, "web": STOPPING}
    mark = len(world.log)
    world.stop(["db"])
    world.drain()
    assert not world.entries(mark, "spawn"), world.entries(mark)
    assert world.states() == {"db": DOWN, "web": DOWN}
    assert not world.m("db").want and not world.m("web").want


def test_a_stop_of_a_requirer_during_a_restart_restarts_the_rest() -> None:
    world = db_web()
    world.restart(["db"])
    mark = len(world.log)
    world.stop(["web"])
    world.drain()
    assert [e.name for e in world.entries(mark, "spawn")] == ["db"]
    assert world.states() == {"db": UP, "web": DOWN}


def test_restart_stops_requirers_first_and_starts_them_after() -> None:
    world = db_web()
    mark = len(world.log)
    world.restart(["db"])
    assert [e.name for e in world.entries(mark, "kill")] == ["web"]
    world.stopped("web")
    assert [e.name for e in world.entries(mark, "kill")] == ["web", "db"]
    world.stopped("db")
    assert world.states() == {"db": STARTING, "web": DOWN}
    world.ready("db")
    assert world.states() == {"db": UP, "web": STARTING}
    assert [e.name for e in world.entries(mark, "spawn")] == ["db", "web"]


def test_a_failed_requirement_holds_only_wanted_requirers() -> None:
    world = World([
        service("db", restart="never"),
        service("web", requires=["db"]),
        service("tool", requires=["db"], autostart=False),
        service("cache", wants=["db"]),
    ])
    world.start_all()
    world.drain()
    assert world.states() == {"db": UP, "web": UP, "tool": DOWN, "cache": UP}
    world.exit("db", EXIT1)
    assert world.states() == {"db": FAILED, "web": STOPPING, "tool": DOWN, "cache": UP}
    world.drain()
    assert world.m("web").want and world.m("web").reason == "requirement db failed"
    assert not world.m("tool").want and world.m("tool").reason != "requirement db failed"
    assert world.order.why_not_start("web") == "requirement db failed"
    assert world.order.blocked("web") and world.order.blocked("tool")
    assert world.order.settled_up(["web"]) and not world.order.settled_up(["tool"])
    world.start(["db"])
    world.drain()
    assert world.states() == {"db": UP, "web": UP, "tool": DOWN, "cache": UP}


def test_a_failed_requirement_is_retried_by_a_start_of_its_requirer() -> None:
    world = World([service("db", restart="never"), service("web", requires=["db"])])
    world.start_all()
    world.drain()
    world.exit("db", EXIT1)
    world.drain()
    world.start(["web"])
    world.drain()
    assert world.states() == {"db": UP, "web": UP}


def test_a_requirement_in_backoff_does_not_take_its_requirers_down() -> None:
    world = db_web()
    pid = world.procs["web"].pid
    world.exit("db", EXIT1)
    assert world.states() == {"db": BACKOFF, "web": UP}
    world.fire("db", T_BACKOFF)
    world.drain()
    assert world.states() == {"db": UP, "web": UP}
    assert world.procs["web"].pid == pid


def test_wants_waits_for_a_settled_service_not_a_ready_one() -> None:
    world = World([service("db", ready="fd:3", restart_limit=2),
                   service("web", wants=["db"])])
    world.start_all()
    assert world.states() == {"db": STARTING, "web": DOWN}
    assert world.order.why_not_start("web") == "waiting for db"
    # In backoff, db is about to start again: web still waits.
    world.exit("db", EXIT1)
    assert world.states() == {"db": BACKOFF, "web": DOWN}
    assert world.order.why_not_start("web") == "waiting for db"
    # Failed, db has settled as much as if it were ready.
    world.fire("db", T_BACKOFF)
    world.exit("db", EXIT1)
    assert world.states() == {"db": FAILED, "web": STARTING}


def test_wants_does_not_wait_for_what_is_stopped() -> None:
    # web wants cache, which waits for db: stopping db stops cache too, which is then
    # down by choice, so web need wait no longer -- though cache's state did not change.
    world = World([service("db", ready="fd:3"), service("cache", requires=["db"]),
                   service("web", wants=["cache"])])
    world.start_all()
    assert world.states() == {"db": STARTING, "cache": DOWN, "web": DOWN}
    world.stop(["db"])
    assert world.states() == {"db": STOPPING, "cache": DOWN, "web": STARTING}


def test_a_restart_during_shutdown_keeps_the_stop_order() -> None:
    # web requires mq, which requires log. Shutting down, web stops first; a restart of mq
    # meanwhile must not signal mq before web is down.
    world = World([service("log"), service("mq", requires=["log"]),
                   service("web", requires=["mq"])])
    world.start_all()
    world.drain()
    world.stop_all()
    mark = len(world.log)
    world.restart(["mq"])
    assert not world.entries(mark, "kill")
    world.stopped("web")
    assert [e.name for e in world.entries(mark, "kill")] == ["mq"]
    world.drain()
    assert world.states() == {"log": UP, "mq": UP, "web": DOWN}


def test_a_restart_keeps_a_requirer_in_backoff_wanted() -> None:
    world = World([service("db"), service("web", requires=["db"]),
                   service("worker", requires=["db"])])
    world.start_all()
    world.drain()
    world.exit("worker", EXIT1)
    assert world.state("worker") == BACKOFF
    world.restart(["db"])
    world.drain()
    assert world.states() == {"db": UP, "web": UP, "worker": UP}


def test_a_oneshot_requirement_is_ready_once_done() -> None:
    world = World([service("migrate", type="oneshot"), service("web", requires=["migrate"])])
    world.start_all()
    assert world.states() == {"migrate": STARTING, "web": DOWN}
    world.ready("migrate")
    assert world.states() == {"migrate": DONE, "web": STARTING}


def test_a_finished_oneshot_between_a_failure_and_its_requirer_holds_it() -> None:
    # web requires migrate (a oneshot, done), which requires db: db's failure holds web
    # too, and web starts again only after migrate ran again, once db is back.
    world = World([service("db", restart="never"),
                   service("migrate", type="oneshot", requires=["db"]),
                   service("web", requires=["migrate"])])
    world.start_all()
    world.drain()
    assert world.states() == {"db": UP, "migrate": DONE, "web": UP}
    world.exit("db", EXIT1)
    world.drain()
    assert world.states() == {"db": FAILED, "migrate": DOWN, "web": DOWN}
    assert world.m("web").reason == "requirement db failed"
    mark = len(world.log)
    world.start(["db"])
    world.drain()
    assert world.states() == {"db": UP, "migrate": DONE, "web": UP}
    assert [e.name for e in world.entries(mark, "spawn")] == ["db", "migrate", "web"]


def test_a_requirer_that_crashes_while_waiting_to_be_held_stays_held() -> None:
    # worker requires log, which requires cache. cache fails: worker stops first, log
    # waits for it -- and crashes meanwhile. Its restart delay must not bring it back
    # while cache has failed.
    world = World([service("cache", restart="never"), service("log", requires=["cache"]),
                   service("worker", requires=["log"])])
    world.start_all()
    world.drain()
    world.exit("cache", EXIT1)
    assert world.states() == {"cache": FAILED, "log": UP, "worker": STOPPING}
    world.exit("log", EXIT1)
    assert world.states() == {"cache": FAILED, "log": DOWN, "worker": STOPPING}
    assert not any(name == "log" for name, _ in world.timers)
    world.drain()
    assert world.states() == {"cache": FAILED, "log": DOWN, "worker": DOWN}
    assert world.m("log").want and world.m("worker").want


def test_a_start_overrides_a_restart_under_way() -> None:
    # A restart asked during a shutdown waits for the stop; a start_all then wants db up
    # again. The restart is over: db's later failure is not "restarted" by it.
    world = World([service("db", restart="never"), service("web", requires=["db"])])
    world.start_all()
    world.drain()
    world.stop_all()
    world.restart(["db"])
    world.start_all()
    world.drain()
    assert world.states() == {"db": UP, "web": UP}
    world.exit("db", EXIT1)
    world.drain()
    assert world.states() == {"db": FAILED, "web": DOWN}
