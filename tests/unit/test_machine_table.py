"""TABLE, the list of a service machine's moves, held to the machine both ways and to the docs.

Every row is witnessed: for each of its sources the machine is driven there (fake clock,
fixed rng) and the event fired; it must land where the witness says, on one of the row's
targets, and between them the witnesses reach every source and every target of every
row. The converse, by hypothesis: random events on random machines make no move that no
row allows, and an event with no row for the current state neither moves the machine nor
asks for anything (the header of roost/core/machine.py calls that a choice). Last, the
transition table of docs/supervisor.md is TABLE's rendering, character for character.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from roost.core import machine
from roost.core.exits import ExitStatus
from roost.core.machine import (
    BACKOFF,
    DONE,
    DOWN,
    FAILED,
    STARTING,
    STATES,
    STOPPING,
    UP,
    Machine,
)
from roost.core.model import COMMAND_KEYS, ServiceConfig
from roost.core.table import TABLE, Transition, table
from tests.unit.test_service import config

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

    from roost.core.actions import Action

DOCS = Path(__file__).resolve().parents[2] / "docs" / "supervisor.md"
BEGIN = "<!-- transitions: generated from roost.core.table.TABLE -->"
END = "<!-- /transitions -->"

EXIT0 = ExitStatus(code=0)
EXIT3 = ExitStatus(code=3)
TERMED = ExitStatus(signal=15)
KILLED = ExitStatus(signal=9)

TIMERS = ("timer:start", "timer:stop", "timer:backoff", "timer:watchdog", "timer:unhealthy",
          "timer:command")
# Every event a machine takes: its public methods, a timer by the timer's name.
METHODS = ("want_up", "want_down", "start", "stop", "restart", "hold", "wait_for",
           "reconfigure", "spawned", "spawn_failed", "skipped", "exec_done", "ready",
           "main_found", "main_changed", "main_missing", "exited", "gone", "keepalive", "extend",
           "checked", "command_exited", "reload")
EVENTS = METHODS + TIMERS

RNG = 0.5  # the jitter factor is exactly 1


class Clock:
    """A fake clock: each event happens a little later than the one before."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def tick(self, dt: float = 0.1) -> float:
        self.now += dt
        return self.now


# A step is an event and its arguments, as fire() takes them.
Step = tuple[object, ...]


def fire(m: Machine, clock: Clock, step: Step, dt: float = 0.1) -> list[Action]:
    """Send `m` the event of `step` (its name, then what it needs), `dt` after the last one."""
    event, *args = step
    now = clock.tick(dt)
    text = args[0] if args and isinstance(args[0], str) else None
    pid = args[0] if args and isinstance(args[0], int) else int(now * 10) + 100
    if isinstance(event, str) and event.startswith("timer:"):
        return m.timer(event.removeprefix("timer:"), now)
    if event == "start":
        return m.start(now)
    if event == "restart":
        return m.restart(now)
    if event == "stop":
        return m.stop(now, text)
    if event == "want_up":
        return m.want_up(now, fresh=bool(args and args[0]))
    if event == "want_down":
        return m.want_down(now, text or "shutting down")
    if event == "hold":
        return m.hold(now, text or "requirement db failed")
    if event == "wait_for":
        return m.wait_for(now, text or "waiting for db")
    if event == "reconfigure":
        cfg = args[0] if args else m.config
        assert isinstance(cfg, ServiceConfig)
        return m.reconfigure(cfg)
    if event == "spawned":
        return m.spawned(pid, now)
    if event == "spawn_failed":
        return m.spawn_failed(text or "cannot start: exec /x: Permission denied", now)
    if event == "skipped":
        return m.skipped(text or "skipped: condition_path_exists=/x is not met", now)
    if event == "exec_done":
        return m.exec_done(now)
    if event == "ready":
        return m.ready(now)
    if event == "main_found":
        return m.main_found(pid, now)
    if event == "main_changed":
        return m.main_changed(pid, now)
    if event == "main_missing":
        return m.main_missing(text or "the launcher exited 0 but left no process", now)
    if event == "exited":
        status = args[0]
        assert isinstance(status, ExitStatus)
        return m.exited(status, now, leftovers=len(args) > 1 and bool(args[1]))
    if event == "gone":
        return m.gone(now)
    if event == "checked":
        return m.checked(now)
    if event == "reload":
        return m.reload(now)
    if event == "command_exited":
        status = args[0] if args else EXIT0
        assert isinstance(status, ExitStatus)
        return m.command_exited(status, now)
    if event == "keepalive":
        timeout = args[0] if args else None
        assert timeout is None or isinstance(timeout, float)
        return m.keepalive(now, timeout)
    if event == "extend":
        delay = args[0] if args else 30.0
        assert isinstance(delay, float)
        return m.extend(delay, now)
    raise AssertionError(f"no such event: {event}")


def test_events_are_every_public_method() -> None:
    public = {name for name in dir(Machine)
              if not name.startswith("_") and callable(getattr(Machine, name))}
    assert public == {*METHODS, "timer"}
    assert {f"timer:{name}" for name in (machine.T_START, machine.T_STOP, machine.T_BACKOFF,
                                         machine.T_WATCHDOG, machine.T_UNHEALTHY,
                                         machine.T_COMMAND)} == set(TIMERS)


def test_rows_name_events_and_states() -> None:
    for row in TABLE:
        assert isinstance(row, Transition)
        assert row.event in EVENTS, row.event
        assert row.sources and set(row.sources) <= set(STATES), row.sources
        assert row.targets and set(row.targets) <= set(STATES), row.targets
        assert len(set(row.sources)) == len(row.sources)
        assert len(set(row.targets)) == len(row.targets)
        assert row.text and "|" not in row.text and "\n" not in row.text


# -- (a) every row witnessed ------------------------------------------------------------

NEVER = {"restart": "never"}
FD = {"ready": "fd:3", "start_timeout": 5.0}
NOTIFY = {"type": "notify", "start_timeout": 5.0}
ONESHOT = {"type": "oneshot", "restart": "never", "start_timeout": 5.0}
FORKING = {"type": "forking", "restart": "never", "start_timeout": 5.0}
DOG = {"type": "notify", "start_timeout": 5.0, "watchdog_sec": 2.0}

# The commands around the main one, one each (core/commands.py).
ONE = [["", ["/bin/true"]]]
COND = {"exec_condition": ONE}
PRE = {"exec_start_pre": ONE}
POST = {"exec_start_post": ONE}
RELOAD = {"exec_reload": ONE}
STOPCMD = {"exec_stop": ONE}
STOPPOST = {"exec_stop_post": ONE}
CONDITIONS = {"conditions": [["condition_path_exists", "/x"]]}

TO_STARTING: tuple[Step, ...] = (("start",), ("spawned",))
TO_UP = (*TO_STARTING, ("exec_done",))             # simple: exec is ready
TO_UP_FD = (*TO_STARTING, ("ready",))               # ready = "fd:3", or notify
TO_BACKOFF = (*TO_UP, ("exited", EXIT3))            # on-failure
TO_FAILED = (*TO_UP, ("exited", EXIT3))             # with NEVER
TO_DONE = (*TO_STARTING, ("exited", EXIT0))         # with ONESHOT
TO_STOPPING = (*TO_UP, ("stop",))
TO_RESTARTING = (*TO_UP, ("restart",))
TO_TIMED_OUT = (*TO_STARTING, ("timer:start",))     # with FD: stopping, then a failure
TO_LEFT_CLEAN = (*TO_STARTING, ("exited", EXIT0, True))   # with ONESHOT: stopping what it left


class Witness:
    """`event` fired in `source` (reached by `path` under `cfg`) lands in `target`."""

    def __init__(self, event: str, source: str, target: str, cfg: Mapping[str, object],
                 path: tuple[Step, ...], step: Step | None = None):
        self.event = event
        self.source = source
        self.target = target
        self.cfg = cfg
        self.path = path
        self.step = step or (event,)
        assert self.step[0] == event

    def __repr__(self) -> str:
        return f"{self.event}:{self.source}->{self.target}"

    def rows(self) -> list[int]:
        """The rows (indices into TABLE) this witnesses."""
        return [i for i, row in enumerate(TABLE)
                if row.event == self.event and self.source in row.sources
                and self.target in row.targets]


W = Witness
WITNESSES = [
    W("start", DOWN, STARTING, {}, ()),
    W("start", FAILED, STARTING, NEVER, TO_FAILED),
    W("start", DONE, STARTING, ONESHOT, TO_DONE),
    W("start", BACKOFF, STARTING, {}, TO_BACKOFF),
    W("start", STOPPING, STOPPING, {}, TO_STOPPING),
    W("spawn_failed", STARTING, FAILED, {}, TO_STARTING),
    W("spawn_failed", UP, FAILED, FD, TO_UP_FD),
    W("spawn_failed", STARTING, DOWN, {}, (*TO_STARTING, ("want_down",))),
    W("spawn_failed", UP, DOWN, FD, (*TO_UP_FD, ("want_down",))),
    # Conditions are looked at before the spawn: a skip comes before any pid.
    W("skipped", STARTING, DONE, {}, (("start",),)),
    W("skipped", STARTING, DOWN, {}, (("start",), ("want_down",))),
    W("exec_done", STARTING, UP, {}, TO_STARTING),
    W("ready", STARTING, UP, FD, TO_STARTING),
    W("ready", STARTING, UP, NOTIFY, TO_STARTING),
    W("exited", STARTING, STARTING, FORKING, TO_STARTING, ("exited", EXIT0, True)),
    W("main_found", STARTING, UP, FORKING, (*TO_STARTING, ("exited", EXIT0, True))),
    W("main_missing", STARTING, STOPPING, FORKING, (*TO_STARTING, ("exited", EXIT0))),
    W("timer:start", STARTING, STOPPING, FD, TO_STARTING),
    W("extend", STARTING, STARTING, NOTIFY, TO_STARTING, ("extend", 10.0)),
    W("extend", STOPPING, STOPPING, {}, TO_STOPPING, ("extend", 20.0)),
    W("keepalive", UP, UP, DOG, TO_UP_FD),
    W("timer:watchdog", UP, STOPPING, DOG, TO_UP_FD),
    W("timer:unhealthy", UP, STOPPING, {}, TO_UP),
    # Unhealthy is a failure: `on-failure` restarts it once it stopped, `on-watchdog` does not.
    W("exited", STOPPING, BACKOFF, {}, (*TO_UP, ("timer:unhealthy",)), ("exited", TERMED)),
    W("exited", STOPPING, FAILED, {"restart": "on-watchdog"}, (*TO_UP, ("timer:unhealthy",)),
      ("exited", TERMED)),
    W("stop", STARTING, STOPPING, FD, TO_STARTING),
    W("stop", UP, STOPPING, {}, TO_UP),
    W("restart", STARTING, STOPPING, FD, TO_STARTING),
    W("restart", UP, STOPPING, {}, TO_UP),
    W("hold", STARTING, STOPPING, FD, TO_STARTING),
    W("hold", UP, STOPPING, {}, TO_UP),
    W("exited", STARTING, BACKOFF, FD, TO_STARTING, ("exited", EXIT3)),
    W("exited", UP, BACKOFF, {}, TO_UP, ("exited", EXIT3)),
    W("exited", STARTING, DOWN, FD, TO_STARTING, ("exited", EXIT0)),
    W("exited", UP, DOWN, {}, TO_UP, ("exited", EXIT0)),
    W("exited", STARTING, FAILED, {**FD, **NEVER}, TO_STARTING, ("exited", EXIT3)),
    W("exited", UP, FAILED, NEVER, TO_UP, ("exited", EXIT3)),
    W("exited", UP, FAILED, {"restart_limit": 1}, TO_UP, ("exited", EXIT3)),
    W("exited", STARTING, DONE, ONESHOT, TO_STARTING, ("exited", EXIT0)),
    W("exited", STARTING, STOPPING, FD, TO_STARTING, ("exited", EXIT3, True)),
    W("exited", UP, STOPPING, {}, TO_UP, ("exited", EXIT0, True)),
    W("exited", STOPPING, DOWN, {}, TO_STOPPING, ("exited", TERMED)),
    W("exited", STOPPING, STARTING, {}, TO_RESTARTING, ("exited", TERMED)),
    W("exited", STOPPING, BACKOFF, FD, TO_TIMED_OUT, ("exited", TERMED)),
    W("exited", STOPPING, FAILED, {**FD, **NEVER}, TO_TIMED_OUT, ("exited", TERMED)),
    # A hung service, killed by the watchdog: restarted by `on-watchdog`, else by the policy.
    W("exited", STOPPING, BACKOFF, {**DOG, "restart": "on-watchdog"},
      (*TO_UP_FD, ("timer:watchdog",)), ("exited", ExitStatus(signal=6))),
    # The main process handed over to one it left, which then ends.
    W("exited", STOPPING, DONE, ONESHOT, (*TO_LEFT_CLEAN, ("main_changed",)),
      ("exited", TERMED)),
    W("gone", STOPPING, DOWN, {}, (*TO_STOPPING, ("exited", TERMED, True))),
    W("gone", STOPPING, STARTING, {}, (*TO_RESTARTING, ("exited", TERMED, True))),
    W("gone", STOPPING, BACKOFF, {}, (*TO_UP, ("exited", EXIT3, True))),
    W("gone", STOPPING, FAILED, NEVER, (*TO_UP, ("exited", EXIT3, True))),
    W("gone", STOPPING, DONE, ONESHOT, TO_LEFT_CLEAN),
    W("spawn_failed", STOPPING, DOWN, {}, TO_STOPPING),
    W("spawn_failed", STOPPING, STARTING, {}, TO_RESTARTING),
    W("spawn_failed", STOPPING, BACKOFF, FD, TO_TIMED_OUT),
    W("spawn_failed", STOPPING, FAILED, {**FD, **NEVER}, TO_TIMED_OUT),
    W("spawn_failed", STOPPING, DONE, ONESHOT, TO_LEFT_CLEAN),
    W("timer:stop", STOPPING, STOPPING, {}, TO_STOPPING),
    W("timer:backoff", BACKOFF, STARTING, {}, TO_BACKOFF),
    W("stop", BACKOFF, DOWN, {}, TO_BACKOFF),
    W("stop", FAILED, DOWN, NEVER, TO_FAILED),
    W("stop", DONE, DOWN, ONESHOT, TO_DONE),
    W("want_down", BACKOFF, DOWN, {}, TO_BACKOFF),
    W("want_down", FAILED, DOWN, NEVER, TO_FAILED),
    W("want_down", DONE, DOWN, ONESHOT, TO_DONE),
    W("hold", BACKOFF, DOWN, {}, TO_BACKOFF),
    W("restart", DOWN, STARTING, {}, ()),
    W("restart", FAILED, STARTING, NEVER, TO_FAILED),
    W("restart", DONE, STARTING, ONESHOT, TO_DONE),
    W("restart", BACKOFF, STARTING, {}, TO_BACKOFF),
    W("restart", STOPPING, STOPPING, {}, TO_STOPPING),
    W("want_up", FAILED, DOWN, NEVER, TO_FAILED),
    W("want_up", DONE, DOWN, ONESHOT, TO_DONE, ("want_up", True)),
    # The commands around the main one.
    W("checked", STARTING, STARTING, CONDITIONS, (("start",),)),
    W("exec_done", STARTING, STARTING, POST, TO_STARTING),
    W("ready", STARTING, STARTING, {**FD, **POST}, TO_STARTING),
    W("main_found", STARTING, STARTING, {**FORKING, **POST},
      (*TO_STARTING, ("exited", EXIT0, True))),
    W("exited", STARTING, STARTING, {**ONESHOT, **POST}, TO_STARTING, ("exited", EXIT0)),
    W("exited", STARTING, UP, {**ONESHOT, "remain_after_exit": True}, TO_STARTING,
      ("exited", EXIT0)),
    W("command_exited", STARTING, STARTING, PRE, (("start",),)),
    W("command_exited", STARTING, UP, POST, (*TO_STARTING, ("exec_done",))),
    W("command_exited", STARTING, DONE, COND, (("start",),), ("command_exited", EXIT3)),
    W("command_exited", STARTING, DOWN, COND, (("start",), ("want_down",)),
      ("command_exited", EXIT3)),
    W("command_exited", STARTING, STOPPING, {**FD, **POST}, (*TO_STARTING, ("ready",)),
      ("command_exited", EXIT3)),
    W("command_exited", STARTING, BACKOFF, PRE, (("start",),), ("command_exited", EXIT3)),
    W("command_exited", STARTING, FAILED, {**PRE, **NEVER}, (("start",),),
      ("command_exited", EXIT3)),
    W("command_exited", UP, UP, RELOAD, (*TO_UP, ("reload",))),
    W("command_exited", STOPPING, STOPPING, STOPCMD, TO_STOPPING),
    W("command_exited", STOPPING, DOWN, STOPPOST, (*TO_STOPPING, ("exited", TERMED))),
    W("command_exited", STOPPING, STARTING, STOPPOST, (*TO_RESTARTING, ("exited", TERMED))),
    W("command_exited", STOPPING, BACKOFF, STOPPOST, (*TO_UP, ("exited", EXIT3), ("gone",))),
    W("command_exited", STOPPING, FAILED, {**STOPPOST, **NEVER},
      (*TO_UP, ("exited", EXIT3), ("gone",))),
    W("command_exited", STOPPING, DONE, {**ONESHOT, **STOPPOST},
      (*TO_STARTING, ("exited", EXIT0), ("gone",))),
    W("reload", UP, UP, RELOAD, TO_UP),
    W("timer:command", STARTING, STARTING, PRE, (("start",),)),
    W("timer:command", UP, UP, RELOAD, (*TO_UP, ("reload",))),
    W("timer:command", STOPPING, STOPPING, STOPCMD, TO_STOPPING),
    W("spawn_failed", STARTING, STOPPING, STOPPOST, TO_STARTING),
    W("spawn_failed", UP, STOPPING, {**FD, **STOPPOST}, TO_UP_FD),
    W("spawn_failed", STOPPING, STOPPING, STOPPOST, TO_STOPPING),
    W("exited", STOPPING, STOPPING, STOPPOST, TO_STOPPING, ("exited", TERMED)),
    W("gone", STOPPING, STOPPING, STOPPOST, (*TO_STOPPING, ("exited", TERMED, True))),
]


def test_every_row_is_witnessed_from_each_source_to_each_target() -> None:
    for witness in WITNESSES:
        # (event, source, target) names one row: the table is not ambiguous.
        assert len(witness.rows()) == 1, (witness, witness.rows())
    for i, row in enumerate(TABLE):
        mine = [w for w in WITNESSES if w.rows() == [i]]
        where = f"row {i}: {row.event} {row.sources} -> {row.targets}"
        assert {w.source for w in mine} == set(row.sources), where
        assert {w.target for w in mine} == set(row.targets), where


@pytest.mark.parametrize("witness", WITNESSES, ids=repr)
def test_row_witness(witness: Witness) -> None:
    clock = Clock()
    m = Machine(config(**witness.cfg), clock.now, rng=lambda: RNG)
    for step in witness.path:
        fire(m, clock, step)
    assert m.state == witness.source, (witness.path, m.state, m.reason)
    fire(m, clock, witness.step)
    assert m.state == witness.target, (m.state, m.reason)
    (i,) = witness.rows()
    assert m.state in TABLE[i].targets


# -- (b) the converse: no move the table does not list -------------------------------

# Exit 0 twice: it is what takes a oneshot to `done` and a forking launcher to its daemon.
STATUSES = st.sampled_from([EXIT0, EXIT0, EXIT3, TERMED, KILLED])


@st.composite
def configs(draw: st.DrawFn) -> ServiceConfig:
    kind = draw(st.sampled_from(["simple", "simple-fd", "notify", "notify", "oneshot",
                                 "oneshot", "forking"]))
    restart = draw(st.sampled_from(["always", "on-failure", "on-watchdog", "never"]))
    if kind == "oneshot" and restart == "always":
        restart = "never"
    delay = draw(st.sampled_from([0.0, 0.1, 0.5, 2.0]))
    cfg = config(type=kind.removesuffix("-fd"), restart=restart, restart_delay=delay,
                 restart_delay_max=max(delay, draw(st.sampled_from([0.0, 1.0, 30.0]))),
                 restart_limit=draw(st.integers(1, 4)),
                 restart_window=draw(st.sampled_from([1.0, 10.0, 60.0])),
                 restart_reset=draw(st.sampled_from([0.0, 1.0, 10.0])),
                 start_timeout=draw(st.sampled_from([0.0, 0.5, 5.0])),
                 stop_timeout=draw(st.sampled_from([0.0, 0.5, 5.0])))
    if kind == "simple-fd":
        cfg.ready = "fd:3"
    if kind == "notify":
        cfg.watchdog_sec = draw(st.sampled_from([0.0, 0.5, 5.0]))
    for key in COMMAND_KEYS:
        setattr(cfg, key, draw(st.sampled_from([[], [], ONE, [["-", ["/x"]], ["", ["/y"]]]])))
    if draw(st.booleans()):
        cfg.conditions = CONDITIONS["conditions"]
    cfg.kill_mode = draw(st.sampled_from(["control-group", "mixed", "process"]))
    cfg.send_sigkill = draw(st.booleans())
    cfg.remain_after_exit = kind == "oneshot" and draw(st.booleans())
    return cfg


def steps(event: str) -> st.SearchStrategy[Step]:
    """The event with arguments drawn as the supervisor or the order might send them."""
    if event == "exited":
        return st.tuples(st.just(event), STATUSES, st.booleans())
    if event == "command_exited":
        return st.tuples(st.just(event), STATUSES)
    if event == "want_up":
        return st.tuples(st.just(event), st.booleans())
    if event == "stop":
        return st.one_of(st.just((event,)), st.tuples(st.just(event), st.just("stopped")))
    if event == "reconfigure":
        return st.tuples(st.just(event), configs())
    if event in ("spawned", "main_found", "main_changed"):
        return st.tuples(st.just(event), st.integers(2, 10))
    if event == "keepalive":
        return st.one_of(st.just((event,)),
                         st.tuples(st.just(event), st.sampled_from([0.0, 0.5, 3.0])))
    if event == "extend":
        return st.tuples(st.just(event), st.sampled_from([0.0, 0.5, 3.0, 100.0]))
    return st.just((event,))


def in_turn(state: str) -> tuple[str, ...]:
    """The events a row names for `state`, and what a running service reports besides."""
    named = {row.event for row in TABLE if state in row.sources}
    if state in machine.RUNNING:
        named |= {"spawned", "main_changed"}
    return tuple(event for event in EVENTS if event in named)


def moves(event: str, source: str) -> set[str]:
    return {t for row in TABLE if row.event == event and source in row.sources
            for t in row.targets}


def check(step: Step, source: str, m: Machine, actions: list[Action]) -> None:
    """`step` took `m` from `source` where a row allows, or nowhere and asked for nothing."""
    event = str(step[0])
    allowed = moves(event, source)
    if m.state in allowed:
        return
    what = "no row" if not allowed else f"rows to {sorted(allowed)}"
    assert (m.state, actions) == (source, []), (
        f"{step} in {source} ({what}) went to {m.state} with {actions}")


# Each event in a few forms, tried on a twin of the machine wherever the walk goes.
PROBES: tuple[Step, ...] = (
    *((event,) for event in EVENTS if event not in ("exited", "spawned", "main_found",
                                                     "main_changed", "command_exited")),
    ("want_up", True), ("stop", "stopped"),
    ("spawned", 7), ("main_found", 7), ("main_changed", 7),
    ("exited", EXIT0), ("exited", EXIT3), ("exited", TERMED, True),
    ("command_exited", EXIT0), ("command_exited", EXIT3), ("command_exited", TERMED),
    ("keepalive", 0.0), ("keepalive", 3.0), ("extend", 0.5), ("extend", 100.0),
)


def twin(m: Machine) -> Machine:
    """A copy of `m` that moves on its own: events fired at it leave `m` as it is."""
    other = copy.copy(m)
    other.starts = list(m.starts)
    return other


def test_twin_is_a_copy() -> None:
    m = Machine(config(), 0.0, rng=lambda: RNG)
    m.start(1.0)
    other = twin(m)
    assert all(getattr(other, name) == getattr(m, name) for name in Machine.__slots__)
    other.timer("start", 2.0)
    other.stop(2.0)
    other.gone(3.0)
    other.start(4.0)
    assert (m.state, m.starts, m.since, m.want) == (STARTING, [1.0], 1.0, True)
    assert other.starts == [1.0, 4.0]


def test_every_event_from_every_witnessed_state() -> None:
    # Not left to chance: each state, reached as each witness reaches it, takes every event.
    reached = set()
    for witness in WITNESSES:
        clock = Clock()
        m = Machine(config(**witness.cfg), clock.now, rng=lambda: RNG)
        for step in witness.path:
            fire(m, clock, step)
        reached.add(m.state)
        for probe in PROBES:
            other = twin(m)
            check(probe, m.state, other, fire(other, Clock(clock.now), probe))
    assert reached == set(STATES)


@settings(max_examples=200, deadline=None)
@given(cfg=configs(), rng=st.floats(0.0, 1.0, exclude_max=True), data=st.data())
def test_random_events_move_only_as_the_table_says(cfg: ServiceConfig, rng: float,
                                                     data: st.DataObject) -> None:
    clock = Clock()
    m = Machine(cfg, clock.now, rng=lambda: rng)
    for _ in range(data.draw(st.integers(1, 60), label="events")):
        source = m.state
        # Every event, on a twin: out of turn ones too, in every state the walk reaches.
        for probe in PROBES:
            other = twin(m)
            check(probe, source, other, fire(other, Clock(clock.now), probe))
        # Then one to move on: mostly one a row names for where it is (else it would
        # rarely leave `down`), one in four any event at all.
        anything = data.draw(st.integers(0, 3), label="out of turn") == 0
        event = data.draw(st.sampled_from(EVENTS if anything else in_turn(source)),
                          label="event")
        step = data.draw(steps(event), label="step")
        dt = data.draw(st.sampled_from([0.0, 0.1, 1.0, 10.0, 100.0]), label="after")
        check(step, source, m, fire(m, clock, step, dt))


# -- (c) the docs ----------------------------------------------------------------------


def test_docs_table_is_the_rendering() -> None:
    lines = DOCS.read_text().splitlines()
    assert lines.count(BEGIN) == 1 and lines.count(END) == 1
    begin, end = lines.index(BEGIN), lines.index(END)
    assert begin < end
    assert "\n".join(lines[begin + 1:end]) == table(), (
        "docs/supervisor.md's transition table is not TABLE's rendering: put "
        "roost.core.table.table() between the markers")

