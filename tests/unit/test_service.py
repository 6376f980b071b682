"""The service state machine, by hand for each transition and by hypothesis against a fake clock.

The machine is pure: these tests play the supervisor's part (spawn, signals, timers,
exits) in memory, so every path runs in microseconds and nothing is mocked away
but the operating system.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from roost.core import machine as service
from roost.core.actions import Arm, Disarm, FindMain, Kill, Spawn
from roost.core.exits import ExitStatus
from roost.core.machine import (
    BACKOFF,
    DONE,
    DOWN,
    FAILED,
    JITTER,
    STARTING,
    STATES,
    STOPPING,
    T_BACKOFF,
    T_START,
    T_STOP,
    UP,
    Machine,
)
from roost.core.model import ServiceConfig

EXIT0 = ExitStatus(code=0)
EXIT3 = ExitStatus(code=3)
TERMED = ExitStatus(signal=15)
KILLED = ExitStatus(signal=9)


def config(**values: object) -> ServiceConfig:
    cfg = ServiceConfig("svc", "/etc/roost/svc.toml", ["svc"])
    for key, value in values.items():
        setattr(cfg, key, value)
    if cfg.type in ("oneshot", "forking"):
        cfg.ready = "exit"
    elif cfg.type == "notify":
        cfg.ready = "notify"
    return cfg


def machine(rng: float = 0.5, **values: object) -> Machine:
    # rng 0.5 makes the jitter factor exactly 1: delays are the bare doubling sequence.
    return Machine(config(**values), 0.0, rng=lambda: rng)


def r(actions: list[service.Action]) -> list[str]:
    return [repr(a) for a in actions]


def up(m: Machine, now: float = 0.0, pid: int = 100) -> None:
    """Start `m` and bring it up (exec counts as ready)."""
    m.start(now)
    m.spawned(pid, now)
    m.exec_done(now)
    assert m.state == UP


# -- starting ------------------------------------------------------------------------------


def test_initial_state() -> None:
    m = machine()
    assert (m.state, m.want, m.pid, m.reason, m.last_exit, m.restarts) == (DOWN, False, None,
                                                                          "", None, 0)


def test_start_spawns() -> None:
    m = machine()
    assert r(m.start(1.0)) == ["Spawn()"]
    assert (m.state, m.want, m.starts, m.since) == (STARTING, True, [1.0], 1.0)
    assert m.spawned(42, 1.0) == []
    assert m.pid == 42
    assert m.exec_done(1.1) == []
    assert (m.state, m.up_since, m.since) == (UP, 1.1, 1.1)


def test_start_with_readiness_arms_the_start_timer_first() -> None:
    m = machine(ready="fd:3", start_timeout=5.0)
    assert r(m.start(0.0)) == ["Arm('start', 5.000)", "Spawn()"]
    m.spawned(1, 0.0)
    assert m.exec_done(0.1) == []
    assert m.state == STARTING
    assert r(m.ready(0.2)) == ["Disarm('start')"]
    assert m.state == UP
    assert m.ready(0.3) == []


def test_no_start_timer_when_zero() -> None:
    m = machine(ready="fd:3", start_timeout=0.0)
    assert r(m.start(0.0)) == ["Spawn()"]


def test_ready_is_ignored_for_exec_readiness() -> None:
    m = machine()
    m.start(0.0)
    m.spawned(1, 0.0)
    assert m.ready(0.1) == []
    assert m.state == STARTING


def test_start_is_idempotent() -> None:
    m = machine()
    up(m)
    assert m.start(1.0) == []
    assert m.state == UP
    m2 = machine()
    m2.start(0.0)
    assert m2.start(0.0) == []


def test_start_timeout_stops_and_fails_with_the_timeout_as_cause() -> None:
    m = machine(ready="fd:3", start_timeout=5.0, restart="never")
    m.start(0.0)
    m.spawned(1, 0.0)
    assert r(m.timer(T_START, 5.0)) == ["Disarm('start')", "Kill(15)", "Arm('stop', 10.000)"]
    assert (m.state, m.reason) == (STOPPING, "not ready within 5s")
    assert r(m.exited(TERMED, 5.1)) == ["Disarm('stop')"]
    assert (m.state, m.reason, m.last_exit) == (FAILED, "not ready within 5s",
                                                "not ready within 5s")


def test_start_timeout_then_restart_by_policy() -> None:
    m = machine(ready="fd:3", start_timeout=5.0, restart="on-failure")
    m.start(0.0)
    m.spawned(1, 0.0)
    m.timer(T_START, 5.0)
    assert r(m.exited(TERMED, 5.1)) == ["Disarm('stop')", "Arm('backoff', 0.500)"]
    assert (m.state, m.reason) == (BACKOFF, "not ready within 5s; restarting in 0.50s")


# -- stopping ------------------------------------------------------------------------------------


def test_stop_signals_and_waits() -> None:
    m = machine(stop_signal=1, stop_timeout=3.0)
    up(m)
    assert r(m.stop(2.0)) == ["Disarm('start')", "Kill(1)", "Arm('stop', 3.000)"]
    assert (m.state, m.want, m.reason) == (STOPPING, False, "stopped")
    assert r(m.exited(ExitStatus(signal=1), 2.1)) == ["Disarm('stop')"]
    assert (m.state, m.pid, m.reason, m.last_exit) == (DOWN, None, "stopped",
                                                       "killed by SIGHUP")


def test_stop_timeout_kills() -> None:
    m = machine(stop_timeout=2.0)
    up(m)
    m.stop(1.0)
    assert r(m.timer(T_STOP, 3.0)) == ["Kill(9)"]
    assert (m.state, m.reason) == (STOPPING, "did not stop within 2s: killed")
    assert r(m.exited(KILLED, 3.1)) == ["Disarm('stop')"]
    assert (m.state, m.reason, m.last_exit) == (DOWN, "did not stop within 2s: killed",
                                                "killed by SIGKILL")


def test_stop_timeout_0_waits_as_long_as_it_takes() -> None:
    # systemd's TimeoutStopSec=0 (a translated redis unit has it): no SIGKILL, ever.
    m = machine(stop_timeout=0.0)
    up(m)
    assert r(m.stop(1.0)) == ["Disarm('start')", "Kill(15)"]
    assert r(m.extend(5.0, 2.0)) == []  # nothing to extend
    assert r(m.exited(TERMED, 500.0)) == ["Disarm('stop')"]
    assert (m.state, m.last_exit) == (DOWN, "killed by SIGTERM")


def test_stop_waits_for_leftovers() -> None:
    m = machine()
    up(m)
    m.stop(1.0)
    assert m.exited(TERMED, 1.1, leftovers=True) == []
    assert (m.state, m.pid) == (STOPPING, None)
    assert r(m.gone(1.2)) == ["Disarm('stop')"]
    assert m.state == DOWN


def test_gone_is_ignored_while_the_main_process_lives() -> None:
    m = machine()
    up(m)
    m.stop(1.0)
    assert m.gone(1.1) == []
    assert m.state == STOPPING
    up_again = machine()
    up(up_again)
    assert up_again.gone(1.0) == []
    assert up_again.state == UP


def test_stop_in_each_quiet_state() -> None:
    down = machine()
    assert down.stop(0.0, "because") == []
    assert (down.state, down.reason) == (DOWN, "because")

    done = machine(type="oneshot")
    done.start(0.0)
    done.spawned(1, 0.0)
    done.exited(EXIT0, 1.0)
    assert done.state == DONE
    assert done.stop(2.0) == []
    assert (done.state, done.reason) == (DOWN, "stopped")

    failed = machine(restart="never")
    up(failed)
    failed.exited(EXIT3, 1.0)
    assert failed.state == FAILED
    assert failed.stop(2.0) == []
    assert (failed.state, failed.reason, failed.last_exit) == (DOWN, "stopped", "exited 3")

    backoff = machine()
    up(backoff)
    backoff.exited(EXIT3, 1.0)
    assert backoff.state == BACKOFF
    assert r(backoff.stop(1.1)) == ["Disarm('backoff')"]
    assert (backoff.state, backoff.want) == (DOWN, False)


def test_stop_while_stopping_keeps_going() -> None:
    m = machine()
    up(m)
    m.restart(1.0)
    assert m.stop(1.1, "shutting down") == []
    assert m.want is False
    m.exited(TERMED, 1.2)
    assert (m.state, m.reason) == (DOWN, "shutting down")


def test_start_while_stopping_restarts_once_stopped() -> None:
    m = machine()
    up(m)
    m.stop(1.0)
    assert m.start(1.1) == []
    assert m.state == STOPPING
    assert r(m.exited(TERMED, 1.2)) == ["Disarm('stop')", "Spawn()"]
    assert (m.state, m.want) == (STARTING, True)


def test_restart() -> None:
    m = machine()
    up(m)
    assert r(m.restart(1.0)) == ["Disarm('start')", "Kill(15)", "Arm('stop', 10.000)"]
    assert (m.state, m.reason, m.want) == (STOPPING, "restarting", True)
    assert r(m.exited(TERMED, 1.1)) == ["Disarm('stop')", "Spawn()"]
    assert m.state == STARTING
    # A restart of something not running is a start.
    m2 = machine()
    assert r(m2.restart(0.0)) == ["Spawn()"]


def test_exit_while_wanted_down_is_down() -> None:
    # The order wants a service down before its turn to stop comes (dependents first).
    m = machine(restart="always")
    up(m)
    assert m.want_down(0.5, "shutting down") == []
    assert (m.state, m.want) == (UP, False)
    assert r(m.exited(EXIT3, 1.0)) == ["Disarm('start')"]
    assert (m.state, m.reason) == (DOWN, "stopped")


# -- exits and the restart policy ----------------------------------------------------------


# `want`: a clean exit that the policy does not restart is what was asked of the service:
# it is no longer wanted, and nothing may start it again unasked. A failure stays wanted.
@pytest.mark.parametrize(("policy", "status", "state", "reason", "want"), [
    ("on-failure", EXIT3, BACKOFF, "exited 3; restarting in 0.50s", True),
    ("on-failure", TERMED, BACKOFF, "killed by SIGTERM; restarting in 0.50s", True),
    ("on-failure", EXIT0, DOWN, "exited 0", False),
    ("always", EXIT0, BACKOFF, "exited 0; restarting in 0.50s", True),
    ("always", EXIT3, BACKOFF, "exited 3; restarting in 0.50s", True),
    ("never", EXIT3, FAILED, "exited 3", True),
    ("never", EXIT0, DOWN, "exited 0", False),
])
def test_policy(policy: str, status: ExitStatus, state: str, reason: str, want: bool) -> None:
    m = machine(restart=policy)
    up(m)
    actions = m.exited(status, 1.0)
    assert (m.state, m.reason, m.pid, m.want) == (state, reason, None, want)
    assert m.last_exit == status.describe()
    assert (Arm(T_BACKOFF, 0.5).__repr__() in r(actions)) == (state == BACKOFF)
    assert m.restarts == (1 if state == BACKOFF else 0)


def test_backoff_timer_respawns() -> None:
    m = machine()
    up(m)
    m.exited(EXIT3, 1.0)
    assert m.timer(T_START, 1.2) == []  # not armed in this state: ignored
    assert r(m.timer(T_BACKOFF, 1.5)) == ["Spawn()"]
    assert m.state == STARTING


def test_start_during_backoff_starts_now() -> None:
    m = machine()
    up(m)
    m.exited(EXIT3, 1.0)
    assert r(m.start(1.1)) == ["Disarm('backoff')", "Spawn()"]
    assert m.state == STARTING


def test_delays_double_up_to_the_maximum() -> None:
    m = machine(restart_delay=0.5, restart_delay_max=5.0, restart_limit=100,
                restart_window=1.0)
    delays = []
    now = 0.0
    for _ in range(7):
        actions = m.start(now) if m.state == DOWN else m.timer(T_BACKOFF, now)
        assert r(actions) == ["Spawn()"]
        m.spawned(1, now)
        m.exec_done(now)
        now += 0.1
        (arm,) = [a for a in m.exited(EXIT3, now) if isinstance(a, Arm)]
        delays.append(arm.delay)
        now += arm.delay
    assert delays == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]
    assert m.restarts == 7


@pytest.mark.parametrize(("rng", "factor"), [(0.0, 1 - JITTER), (1.0, 1 + JITTER)])
def test_jitter_bounds(rng: float, factor: float) -> None:
    m = machine(rng=rng, restart_delay=1.0, restart_delay_max=1.1)
    up(m)
    (arm,) = [a for a in m.exited(EXIT3, 1.0) if isinstance(a, Arm)]
    assert arm.delay == pytest.approx(min(1.0 * factor, 1.1))


def test_long_uptime_resets_the_delay() -> None:
    m = machine(restart_delay=1.0, restart_reset=10.0)
    up(m, now=0.0)
    m.exited(EXIT3, 1.0)          # 1.0
    m.timer(T_BACKOFF, 2.0)
    m.spawned(2, 2.0)
    m.exec_done(2.0)
    (arm,) = [a for a in m.exited(EXIT3, 3.0) if isinstance(a, Arm)]
    assert arm.delay == 2.0       # up 1 s: keeps doubling
    m.timer(T_BACKOFF, 5.0)
    m.spawned(3, 5.0)
    m.exec_done(5.0)
    (arm,) = [a for a in m.exited(EXIT3, 15.0) if isinstance(a, Arm)]
    assert arm.delay == 1.0       # up 10 s: back to the start


def test_restart_limit_fails_with_a_clear_reason() -> None:
    m = machine(restart_limit=3, restart_window=60.0, restart_delay=0.1)
    now = 0.0
    m.start(now)
    for _ in range(2):
        m.spawned(1, now)
        now += 1
        m.exited(EXIT3, now)
        assert m.state == BACKOFF
        now += 1
        m.timer(T_BACKOFF, now)
    m.spawned(1, now)
    assert r(m.exited(EXIT3, now + 1)) == ["Disarm('start')"]
    assert m.state == FAILED
    assert m.reason == "started 3 times within 60s, giving up (last: exited 3)"
    assert m.restarts == 2


def test_restart_limit_counts_only_the_window() -> None:
    m = machine(restart_limit=2, restart_window=5.0, restart_delay=0.1)
    now = 0.0
    m.start(now)
    for _ in range(5):
        m.spawned(1, now)
        now += 6.0  # each start is older than the window by the next exit
        m.exited(EXIT3, now)
        assert m.state == BACKOFF
        m.timer(T_BACKOFF, now)


def test_start_after_failure_forgets_the_count() -> None:
    m = machine(restart_limit=1, restart="always")
    up(m)
    m.exited(EXIT3, 1.0)
    assert m.state == FAILED
    assert r(m.start(2.0)) == ["Spawn()"]
    assert m.starts == [2.0]


def test_want_up_fresh_forgets_a_failure() -> None:
    m = machine(restart="never")
    up(m)
    m.exited(EXIT3, 1.0)
    assert m.want_up(2.0, fresh=True) == []
    assert (m.state, m.reason, m.starts, m.want, m.since) == (DOWN, "", [], True, 2.0)
    running = machine()
    up(running)
    assert running.want_up(1.0, fresh=True) == []
    assert running.state == UP and running.starts == [0.0]


def test_want_up_forgets_a_failure_and_its_delay_but_not_a_finished_oneshot() -> None:
    m = machine(restart_limit=2, restart_delay=1.0)
    up(m)
    m.exited(EXIT3, 1.0)                 # delay 1.0, the next one 2.0
    m.timer(T_BACKOFF, 2.0)
    m.spawned(2, 2.0)
    m.exited(EXIT3, 3.0)
    assert m.state == FAILED             # 2 starts within the window
    assert m.want_up(4.0) == []          # no `fresh` needed to forget a failure
    assert (m.state, m.reason, m.starts, m.want) == (DOWN, "", [], True)
    up(m, now=5.0)
    (arm,) = [a for a in m.exited(EXIT3, 6.0) if isinstance(a, Arm)]
    assert arm.delay == 1.0              # the delay starts over too

    done = machine(type="oneshot")
    done.start(0.0)
    done.spawned(1, 0.0)
    done.exited(EXIT0, 1.0)
    assert done.want_up(2.0) == []
    assert (done.state, done.starts) == (DONE, [0.0])
    assert done.want_up(3.0, fresh=True) == []
    assert (done.state, done.starts, done.want) == (DOWN, [], True)


def test_want_up_and_want_down_do_not_move_a_down_or_running_service() -> None:
    m = machine()
    assert m.want_up(0.0) == []
    assert (m.state, m.want) == (DOWN, True)
    assert m.want_down(0.0, "not needed") == []
    assert (m.state, m.want, m.reason) == (DOWN, False, "not needed")
    up(m)
    assert m.want_down(1.0, "shutting down") == []
    assert (m.state, m.want, m.pid) == (UP, False, 100)
    # The stop, when the order calls it, carries the want-down's reason.
    assert r(m.stop(2.0)) == ["Disarm('start')", "Kill(15)", "Arm('stop', 10.000)"]
    assert (m.state, m.reason) == (STOPPING, "shutting down")
    m.exited(TERMED, 2.1)
    assert (m.state, m.reason, m.want) == (DOWN, "shutting down", False)


def test_want_down_ends_what_does_not_run_at_once() -> None:
    backoff = machine()
    up(backoff)
    backoff.exited(EXIT3, 1.0)
    assert r(backoff.want_down(1.1, "shutting down")) == ["Disarm('backoff')"]
    assert (backoff.state, backoff.reason, backoff.want) == (DOWN, "shutting down", False)
    failed = machine(restart="never")
    up(failed)
    failed.exited(EXIT3, 1.0)
    assert failed.want_down(1.1, "shutting down") == []
    assert (failed.state, failed.reason) == (DOWN, "shutting down")


def test_want_down_while_restarting_ends_down() -> None:
    m = machine()
    up(m)
    m.restart(1.0)
    assert m.want_down(1.1, "shutting down") == []
    assert (m.state, m.want) == (STOPPING, False)
    assert r(m.exited(TERMED, 1.2)) == ["Disarm('stop')"]
    assert (m.state, m.reason) == (DOWN, "shutting down")


def test_hold_keeps_a_wanted_down_service_down() -> None:
    m = machine()
    assert m.hold(0.0, "requirement db failed") == []
    assert (m.state, m.reason) == (DOWN, "")  # not wanted: nothing to keep down
    m.want_up(0.0)
    assert m.hold(0.0, "requirement db failed") == []
    assert (m.state, m.reason, m.want) == (DOWN, "requirement db failed", True)


def test_hold_stops_a_running_service_that_stays_wanted() -> None:
    m = machine(restart="always")
    up(m)
    assert r(m.hold(1.0, "requirement db failed")) == [
        "Disarm('start')", "Kill(15)", "Arm('stop', 10.000)"]
    assert (m.state, m.reason, m.want) == (STOPPING, "requirement db failed", True)
    # Down, not restarted by the policy: the order starts it once the requirement is back.
    assert r(m.exited(TERMED, 1.1)) == ["Disarm('stop')"]
    assert (m.state, m.reason, m.want, m.restarts) == (DOWN, "requirement db failed", True, 0)


def test_hold_cancels_a_restart() -> None:
    backoff = machine()
    up(backoff)
    backoff.exited(EXIT3, 1.0)
    assert r(backoff.hold(1.1, "requirement db failed")) == ["Disarm('backoff')"]
    assert (backoff.state, backoff.reason, backoff.want) == (DOWN, "requirement db failed", True)
    restarting = machine()
    up(restarting)
    restarting.restart(1.0)
    assert restarting.hold(1.1, "requirement db failed") == []
    assert restarting.state == STOPPING
    assert r(restarting.exited(TERMED, 1.2)) == ["Disarm('stop')"]
    assert (restarting.state, restarting.reason, restarting.want) == (
        DOWN, "requirement db failed", True)


def test_hold_leaves_a_failed_or_done_service_as_it_is() -> None:
    failed = machine(restart="never")
    up(failed)
    failed.exited(EXIT3, 1.0)
    assert failed.hold(1.1, "requirement db failed") == []
    assert (failed.state, failed.reason) == (FAILED, "exited 3")
    done = machine(type="oneshot")
    done.start(0.0)
    done.spawned(1, 0.0)
    done.exited(EXIT0, 1.0)
    assert done.hold(1.1, "requirement db failed") == []
    assert (done.state, done.reason) == (DONE, "")


def test_wait_for_is_only_shown() -> None:
    m = machine()
    assert m.wait_for(0.0, "waiting for db") == []
    assert (m.state, m.reason) == (DOWN, "")      # not wanted: it waits for nothing
    m.want_up(0.0)
    assert m.wait_for(0.0, "waiting for db") == []
    assert (m.state, m.reason, m.want) == (DOWN, "waiting for db", True)
    up(m)
    assert m.wait_for(1.0, "waiting for web to stop") == []
    assert (m.state, m.reason) == (UP, "")        # wanted and up: nothing to wait for
    m.want_down(1.0, "stopped")
    assert m.wait_for(1.0, "waiting for web to stop") == []
    assert (m.state, m.reason, m.want) == (UP, "waiting for web to stop", False)


def test_reconfigure_applies_from_the_next_start_and_stop() -> None:
    m = machine(ready="fd:3", start_timeout=5.0)
    m.start(0.0)
    m.spawned(1, 0.0)
    assert m.reconfigure(config(stop_signal=1, stop_timeout=2.0, start_timeout=7.0,
                                ready="fd:3")) == []
    assert m.state == STARTING
    m.ready(0.1)
    assert r(m.stop(1.0)) == ["Disarm('start')", "Kill(1)", "Arm('stop', 2.000)"]
    m.exited(ExitStatus(signal=1), 1.1)
    assert r(m.start(2.0)) == ["Arm('start', 7.000)", "Spawn()"]


# -- leftovers -------------------------------------------------------------------------------


def test_crash_with_leftovers_cleans_up_then_decides() -> None:
    m = machine(restart="on-failure")
    up(m)
    assert r(m.exited(EXIT3, 1.0, leftovers=True)) == [
        "Disarm('start')", "Disarm('start')", "Kill(15)", "Arm('stop', 10.000)"]
    assert (m.state, m.reason) == (STOPPING, "exited 3; stopping what it left")
    assert r(m.gone(1.5)) == ["Disarm('stop')", "Arm('backoff', 0.500)"]
    assert m.state == BACKOFF


def test_clean_exit_with_leftovers_ends_down() -> None:
    m = machine(restart="on-failure")
    up(m)
    m.exited(EXIT0, 1.0, leftovers=True)
    assert m.want is True                   # not decided until what it left is gone
    m.gone(1.1)
    assert (m.state, m.reason, m.want) == (DOWN, "exited 0", False)


def test_clean_exit_is_not_restarted_unasked() -> None:
    m = machine(restart="on-failure")
    up(m)
    m.exited(EXIT0, 1.0)
    assert (m.state, m.want) == (DOWN, False)
    # Nothing it is sent may start it again; a start does.
    assert m.timer(T_BACKOFF, 2.0) == [] and m.hold(2.0, "x") == []
    assert m.wait_for(2.0, "waiting for db") == []
    assert (m.state, m.want, m.reason) == (DOWN, False, "exited 0")
    assert r(m.start(3.0)) == ["Spawn()"]
    assert (m.state, m.want) == (STARTING, True)


# -- failing to start ------------------------------------------------------------------------


def test_spawn_failure_is_a_failure_not_a_crash() -> None:
    m = machine(restart="always", ready="fd:3")
    assert r(m.start(0.0)) == ["Arm('start', 60.000)", "Spawn()"]
    assert r(m.spawn_failed("cannot start: exec /x: Permission denied", 0.0)) == [
        "Disarm('start')"]
    assert (m.state, m.reason, m.last_exit, m.restarts) == (
        FAILED, "cannot start: exec /x: Permission denied",
        "cannot start: exec /x: Permission denied", 0)


def test_spawn_failure_while_stopping_is_down() -> None:
    m = machine()
    m.start(0.0)
    m.spawned(1, 0.0)
    m.stop(0.1)
    assert r(m.spawn_failed("cannot start: chdir /x: No such file or directory", 0.2)) == [
        "Disarm('stop')"]
    assert m.state == DOWN


def test_spawn_failure_when_no_longer_wanted() -> None:
    m = machine()
    m.start(0.0)
    m.want_down(0.0, "stopped")
    assert r(m.spawn_failed("nope", 0.0)) == ["Disarm('start')"]
    assert (m.state, m.reason) == (DOWN, "stopped")


# -- oneshot and forking ---------------------------------------------------------------------


def test_oneshot() -> None:
    m = machine(type="oneshot", start_timeout=30.0, restart="never")
    assert r(m.start(0.0)) == ["Arm('start', 30.000)", "Spawn()"]
    m.spawned(1, 0.0)
    assert m.exec_done(0.0) == []
    assert m.state == STARTING
    assert r(m.exited(EXIT0, 1.0)) == ["Disarm('start')"]
    assert (m.state, m.pid) == (DONE, None)
    failing = machine(type="oneshot", restart="never")
    failing.start(0.0)
    failing.spawned(1, 0.0)
    failing.exited(EXIT3, 1.0)
    assert (failing.state, failing.reason) == (FAILED, "exited 3")
    retried = machine(type="oneshot", restart="on-failure")
    retried.start(0.0)
    retried.spawned(1, 0.0)
    retried.exited(EXIT3, 1.0)
    assert retried.state == BACKOFF


def test_forking_daemon_found() -> None:
    m = machine(type="forking")
    m.start(0.0)
    m.spawned(10, 0.0)
    assert r(m.exited(EXIT0, 0.5, leftovers=True)) == ["FindMain()"]
    assert (m.state, m.pid) == (STARTING, None)
    assert r(m.main_found(11, 0.6)) == ["Disarm('start')"]
    assert (m.state, m.pid) == (UP, 11)
    assert m.main_found(12, 0.7) == []
    assert m.pid == 11


def test_forking_launcher_exit_is_find_main() -> None:
    m = machine(type="forking")
    m.start(0.0)
    m.spawned(10, 0.0)
    assert r(m.exited(EXIT0, 0.5, leftovers=True)) == ["FindMain()"]


def test_forking_daemon_missing() -> None:
    m = machine(type="forking", restart="never")
    m.start(0.0)
    m.spawned(10, 0.0)
    m.exited(EXIT0, 0.5, leftovers=True)
    actions = m.main_missing("2 processes left and no pid_file to choose the main one", 0.6)
    assert r(actions) == ["Disarm('start')", "Disarm('start')", "Kill(15)",
                          "Arm('stop', 10.000)"]
    assert m.state == STOPPING
    m.gone(0.7)
    assert (m.state, m.reason) == (FAILED,
                                   "2 processes left and no pid_file to choose the main one")


def test_forking_launcher_failure() -> None:
    m = machine(type="forking", restart="never")
    m.start(0.0)
    m.spawned(10, 0.0)
    m.exited(EXIT3, 0.5)
    assert (m.state, m.reason) == (FAILED, "exited 3")


def test_events_out_of_turn_are_ignored() -> None:
    m = machine()
    assert m.exited(EXIT3, 0.0) == [] and m.state == DOWN
    assert m.timer(T_STOP, 0.0) == [] and m.timer(T_BACKOFF, 0.0) == []
    assert m.main_found(5, 0.0) == [] and m.main_missing("x", 0.0) == []
    assert m.spawn_failed("x", 0.0) == [] and m.state == DOWN
    assert m.exec_done(0.0) == [] and m.ready(0.0) == [] and m.gone(0.0) == []
    assert m.state == DOWN


def test_action_reprs() -> None:
    assert r([Spawn(), Kill(9), Kill(15), Arm("stop", 1), Disarm("stop"), FindMain()]) == [
        "Spawn()", "Kill(9)", "Kill(15)", "Arm('stop', 1.000)", "Disarm('stop')", "FindMain()"]


# -- the whole machine, driven at random ---------------------------------------------------------

TIMER_STATES = {T_BACKOFF: {BACKOFF}, T_START: {STARTING}, T_STOP: {STOPPING}}

# The requests that set `want`, and what they set it to.
REQUESTS = {"start": True, "restart": True, "want_up": True, "stop": False, "want_down": False}
# What the supervisor reports of the system (the rest are requests, or only shown).
PROCESS_EVENTS = frozenset({"spawned", "spawn_failed", "exec_done", "ready", "main_found",
                            "main_missing", "exited", "gone", "timer"})


class World(RuleBasedStateMachine):
    """A fake supervisor around one Machine: processes, signals and timers, all in memory.

    Actions are carried out the way the supervisor carries them out, in order, a
    Spawn answered at once (spawned or spawn_failed) and its own actions handled
    before the next. Invariants are checked after every step.
    """

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.next_pid = 100
        self.armed: dict[str, float] = {}
        self.main_alive = False
        self.main_ignores = False
        self.main_doomed: int | None = None
        self.exec_reported = False
        self.leftovers = 0
        self.left_ignore = False
        self.left_doomed: int | None = None
        self.last_request: str | None = None
        self.wanted = False
        self.spawns: list[tuple[float, bool]] = []  # (time, automatic) since the last clear
        self.base: float | None = None
        self.up_at: float | None = None
        self.backoffs = 0
        self.in_timer: str | None = None
        self.data: st.DataObject | None = None

    # -- set-up ------------------------------------------------------------------

    @initialize(
        kind=st.sampled_from(["simple", "simple-fd", "notify", "oneshot", "forking"]),
        restart=st.sampled_from(["always", "on-failure", "never"]),
        delay=st.sampled_from([0.0, 0.1, 0.5, 2.0]),
        delay_max=st.sampled_from([0.0, 1.0, 5.0, 30.0]),
        limit=st.integers(1, 6),
        window=st.sampled_from([1.0, 10.0, 60.0]),
        reset=st.sampled_from([0.0, 1.0, 10.0]),
        start_timeout=st.sampled_from([0.0, 0.5, 5.0]),
        stop_timeout=st.sampled_from([0.1, 0.5, 5.0]),  # 0 (no limit): its own test
        rng=st.floats(0.0, 1.0),
    )
    def setup(self, kind: str, restart: str, delay: float, delay_max: float, limit: int,
              window: float, reset: float, start_timeout: float, stop_timeout: float,
              rng: float) -> None:
        if kind == "oneshot" and restart == "always":
            restart = "never"
        cfg = config(type=kind.removesuffix("-fd"), restart=restart, restart_delay=delay,
                     restart_delay_max=max(delay, delay_max), restart_limit=limit,
                     restart_window=window, restart_reset=reset, start_timeout=start_timeout,
                     stop_timeout=stop_timeout)
        if kind == "simple-fd":
            cfg.ready = "fd:3"
        self.cfg = cfg
        self.machine = Machine(cfg, 0.0, rng=lambda: rng)

    # -- carrying out actions ------------------------------------------------------

    def call(self, method: str, *args: object, **kwargs: object) -> list[service.Action]:
        m = self.machine
        before, wanted = m.state, m.want
        actions: list[service.Action] = getattr(m, method)(*args, **kwargs)
        if method in REQUESTS:
            self.wanted = REQUESTS[method]
        elif method in PROCESS_EVENTS:
            self.check_want(method, before, wanted)
        self.observe(before)
        self.act(actions)
        return actions

    def check_want(self, method: str, before: str, wanted: bool) -> None:
        """Of the process events, only a clean exit the policy does not restart changes `want`."""
        m, cfg = self.machine, self.cfg
        if m.want != wanted:
            assert wanted, f"{method} made the service wanted"
            assert (before in (STARTING, UP, STOPPING) and m.state == DOWN
                    and m.last_exit == "exited 0"), (method, before, m.state, m.last_exit)
            assert cfg.restart != "always" and cfg.type != "oneshot", (cfg.restart, cfg.type)
            self.wanted = False
        elif self.last_request == "start" and before != DOWN and m.state == DOWN:
            # Started and not stopped or held since: down only by that clean exit.
            raise AssertionError(f"{method}: a wanted service went down by itself "
                                 f"from {before} ({m.reason})")

    def observe(self, before: str) -> None:
        state = self.machine.state
        if state == UP and before != UP:
            self.up_at = self.now

    def act(self, actions: list[service.Action]) -> None:
        for action in actions:
            before = self.machine.state
            if isinstance(action, Spawn):
                self.spawn()
            elif isinstance(action, Arm):
                self.arm(action)
            elif isinstance(action, Disarm):
                self.armed.pop(action.name, None)
            elif isinstance(action, Kill):
                self.kill(action)
            elif isinstance(action, FindMain):
                self.find_main()
            self.observe(before)

    def spawn(self) -> None:
        # A spawn only when nothing of the service is alive.
        assert not self.main_alive, "Spawn while the main process lives"
        assert self.leftovers == 0, "Spawn while processes of the last instance remain"
        assert self.machine.state == STARTING
        assert self.machine.want, "Spawn for a service that is not wanted"
        automatic = self.in_timer == T_BACKOFF
        self.spawns.append((self.now, automatic))
        if automatic:
            window = self.cfg.restart_window
            recent = [t for t, _ in self.spawns if t > self.now - window]
            assert len(recent) <= self.cfg.restart_limit, (
                f"{len(recent)} starts within {window}s, limit {self.cfg.restart_limit}")
        self.up_at = None
        assert self.data is not None
        if self.data.draw(st.integers(0, 9), label="spawn fails") == 0:
            self.call("spawn_failed", "cannot start: not found", self.now)
            return
        self.main_alive = True
        self.main_ignores = self.data.draw(st.booleans(), label="ignores the stop signal")
        self.main_doomed = None
        self.exec_reported = False
        self.next_pid += 1
        self.call("spawned", self.next_pid, self.now)

    def arm(self, action: Arm) -> None:
        self.armed[action.name] = self.now + action.delay
        if action.name != T_BACKOFF:
            return
        cfg = self.cfg
        self.backoffs += 1
        restarted = (self.base is None or (
            self.up_at is not None and self.now - self.up_at >= cfg.restart_reset))
        expected = cfg.restart_delay if restarted else min(self.base * 2, cfg.restart_delay_max)
        self.base = expected
        low, high = expected * (1 - JITTER), min(expected * (1 + JITTER), cfg.restart_delay_max)
        assert low - 1e-9 <= action.delay <= high + 1e-9, (action.delay, expected)
        # Within the configured bounds, whatever the jitter.
        assert cfg.restart_delay * (1 - JITTER) - 1e-9 <= action.delay
        assert action.delay <= cfg.restart_delay_max + 1e-9

    def kill(self, action: Kill) -> None:
        lethal = action.signal == 9
        if self.main_alive and (lethal or not self.main_ignores):
            self.main_doomed = action.signal
        if self.leftovers and (lethal or not self.left_ignore):
            self.left_doomed = action.signal

    def find_main(self) -> None:
        assert not self.main_alive
        if self.leftovers:
            # One of the launcher's children is the daemon.
            self.leftovers -= 1
            self.main_alive = True
            self.main_ignores = self.left_ignore
            self.main_doomed = self.left_doomed
            self.exec_reported = True
            self.next_pid += 1
            self.call("main_found", self.next_pid, self.now)
            return
        self.call("main_missing", "the launcher exited 0 but left no process", self.now)
        # No process at all: the service is already empty.
        self.call("gone", self.now)

    def main_exits(self, status: ExitStatus) -> None:
        self.main_alive = False
        self.main_doomed = None
        self.call("exited", status, self.now, self.leftovers > 0)
        self.clear_seen()

    def clear_seen(self) -> None:
        if self.machine.state == FAILED and self.machine.reason.startswith("started"):
            window = self.cfg.restart_window
            recent = [t for t, _ in self.spawns if t > self.now - window]
            assert len(recent) >= self.cfg.restart_limit

    # -- requests --------------------------------------------------------------------

    @rule(data=st.data())
    def start(self, data: st.DataObject) -> None:
        self.data = data
        if self.machine.state == FAILED:
            self.spawns.clear()
            self.base = None
        self.last_request = "start"
        self.call("start", self.now)
        assert self.machine.want

    @rule(data=st.data())
    def stop(self, data: st.DataObject) -> None:
        self.data = data
        self.last_request = "stop"
        self.call("stop", self.now, "stopped")
        assert not self.machine.want

    @rule(data=st.data())
    def restart(self, data: st.DataObject) -> None:
        self.data = data
        if self.machine.state == FAILED:
            self.spawns.clear()
            self.base = None
        self.last_request = "start"
        self.call("restart", self.now)
        assert self.machine.want

    @rule(data=st.data(), fresh=st.booleans())
    def want_up(self, data: st.DataObject, fresh: bool) -> None:
        self.data = data
        before = self.machine.state
        forgets = before == FAILED or (fresh and before in (DOWN, DONE))
        if forgets:
            self.spawns.clear()
            self.base = None
        self.last_request = "want_up"
        assert self.call("want_up", self.now, fresh) == []
        # The want changes, the machine does not move, but to forget a failure or a run.
        assert self.machine.state == (DOWN if forgets else before)
        assert self.machine.want

    @rule(data=st.data())
    def want_down(self, data: st.DataObject) -> None:
        self.data = data
        before = self.machine.state
        self.last_request = "want_down"
        self.call("want_down", self.now, "shutting down")
        # What runs goes on until the order calls stop(); the rest is down at once.
        assert self.machine.state == (before if before in (STARTING, UP, STOPPING) else DOWN)
        assert not self.machine.want

    @rule(data=st.data())
    def hold(self, data: st.DataObject) -> None:
        self.data = data
        self.last_request = "hold"
        wanted = self.machine.want
        self.call("hold", self.now, "requirement db failed")
        assert self.machine.want == wanted

    @rule()
    def wait_for(self) -> None:
        m = self.machine
        before = (m.state, m.want, m.pid)
        assert m.wait_for(self.now, "waiting for db") == []
        assert (m.state, m.want, m.pid) == before

    # -- the processes --------------------------------------------------------------------

    @precondition(lambda self: self.main_alive and not self.exec_reported)
    @rule(data=st.data())
    def exec_succeeds(self, data: st.DataObject) -> None:
        self.data = data
        self.exec_reported = True
        self.call("exec_done", self.now)

    @precondition(lambda self: self.main_alive and not self.exec_reported
                  and not self.leftovers)
    @rule(data=st.data())
    def exec_fails(self, data: st.DataObject) -> None:
        self.data = data
        self.exec_reported = True
        self.main_alive = False
        self.main_doomed = None
        self.call("spawn_failed", "cannot start: exec /x: Permission denied", self.now)

    @precondition(lambda self: self.main_alive)
    @rule(data=st.data())
    def says_ready(self, data: st.DataObject) -> None:
        self.data = data
        self.call("ready", self.now)

    @precondition(lambda self: self.main_alive)
    @rule(data=st.data(), code=st.sampled_from([0, 0, 1, 3]), signal=st.sampled_from(
        [None, None, 11]))
    def main_ends(self, data: st.DataObject, code: int, signal: int | None) -> None:
        self.data = data
        self.main_exits(ExitStatus(signal=signal) if signal else ExitStatus(code=code))

    @precondition(lambda self: self.main_doomed is not None)
    @rule(data=st.data())
    def signal_takes_effect(self, data: st.DataObject) -> None:
        self.data = data
        self.main_exits(ExitStatus(signal=self.main_doomed))

    # A process cannot fork once SIGKILL is on its way (the kernel fails the fork).
    @precondition(lambda self: self.main_alive and self.main_doomed != 9)
    @rule(ignores=st.booleans())
    def forks_a_child(self, ignores: bool) -> None:
        self.leftovers += 1
        self.left_ignore = ignores
        self.left_doomed = None  # a child forked after a signal was sent did not get it

    @precondition(lambda self: self.leftovers > 0)
    @rule(data=st.data(), doomed_only=st.booleans())
    def children_end(self, data: st.DataObject, doomed_only: bool) -> None:
        if doomed_only and self.left_doomed is None:
            return
        self.data = data
        self.leftovers = 0
        self.left_doomed = None
        if not self.main_alive:
            self.call("gone", self.now)

    @rule(data=st.data(), dt=st.sampled_from([0.0, 0.05, 0.3, 1.0, 4.0, 20.0, 100.0]))
    def time_passes(self, data: st.DataObject, dt: float) -> None:
        self.data = data
        self.advance(self.now + dt)

    def advance(self, target: float) -> None:
        while self.armed:
            name, when = min(self.armed.items(), key=lambda item: (item[1], item[0]))
            if when > target:
                break
            del self.armed[name]
            self.now = max(self.now, when)
            self.in_timer = name
            try:
                self.call("timer", name, self.now)
            finally:
                self.in_timer = None
        self.now = max(self.now, target)

    @rule(data=st.data())
    def settle(self, data: st.DataObject) -> None:
        """Let every signal take effect and every timer fire, with nothing else happening."""
        self.data = data
        for _ in range(200):
            if self.main_doomed is not None:
                self.main_exits(ExitStatus(signal=self.main_doomed))
            elif self.left_doomed is not None:
                self.leftovers = 0
                self.left_doomed = None
                if not self.main_alive:
                    self.call("gone", self.now)
            elif self.armed:
                self.advance(min(self.armed.values()))
            else:
                break
        if self.last_request == "stop":
            assert self.machine.state == DOWN, (self.machine.state, self.machine.reason)
            assert not self.main_alive and not self.leftovers
        if self.last_request == "hold":
            # Held: nothing of it runs, and nothing restarts it.
            assert self.machine.state in (DOWN, FAILED, DONE), self.machine.state
            assert not self.main_alive and not self.leftovers

    # -- invariants ----------------------------------------------------------------------

    @invariant()
    def state_is_known(self) -> None:
        assert self.machine.state in STATES

    @invariant()
    def pid_iff_main_process(self) -> None:
        assert (self.machine.pid is not None) == self.main_alive

    @invariant()
    def quiet_states_have_no_process(self) -> None:
        if self.machine.state in (DOWN, BACKOFF, FAILED, DONE):
            assert not self.main_alive and self.leftovers == 0

    @invariant()
    def timers_only_where_used(self) -> None:
        for name in self.armed:
            assert self.machine.state in TIMER_STATES[name], (name, self.machine.state)
        if self.machine.state == BACKOFF:
            assert T_BACKOFF in self.armed

    @invariant()
    def want_follows_the_requests(self) -> None:
        # And the clean exits that end a service's want (check_want).
        assert self.machine.want == self.wanted

    @invariant()
    def unwanted_is_never_restarted_nor_failed(self) -> None:
        if not self.machine.want:
            assert self.machine.state not in (BACKOFF, FAILED, DONE), self.machine.state

    @invariant()
    def restarts_count_backoffs(self) -> None:
        assert self.machine.restarts == self.backoffs

    @invariant()
    def states_fit_the_type(self) -> None:
        m = self.machine
        if m.state == DONE:
            assert self.cfg.type == "oneshot"
        if m.state == UP:
            assert self.cfg.type != "oneshot"
        if m.state == FAILED:
            assert m.reason and m.last_exit

    @invariant()
    def times_are_sane(self) -> None:
        m = self.machine
        assert m.since <= self.now
        assert all(math.isfinite(t) and t <= self.now for t in m.starts)


World.TestCase.settings = settings(max_examples=500, stateful_step_count=60, deadline=None)
test_world = World.TestCase


# -- sd_notify's watchdog and timeout extension ---------------------------------------------

DOG = {"type": "notify", "watchdog_sec": 2.0, "start_timeout": 5.0}


def notify_up(m: Machine, now: float = 0.0) -> list[str]:
    """Start a notify service and let it send READY=1; the actions of READY=1."""
    m.start(now)
    m.spawned(100, now)
    actions = r(m.ready(now + 0.1))
    assert m.state == UP
    return actions


def test_watchdog_is_armed_once_up_and_started_over_by_keepalive() -> None:
    m = machine(**DOG)
    m.start(0.0)
    m.spawned(100, 0.0)
    assert m.keepalive(0.05) == []  # not up yet: nothing to start over
    assert r(m.ready(0.1)) == ["Disarm('start')", "Arm('watchdog', 2.000)"]
    assert r(m.keepalive(1.0)) == ["Arm('watchdog', 2.000)"]
    assert machine(type="notify").keepalive(0.0) == []


def test_a_missed_keepalive_aborts_the_service_as_a_failure() -> None:
    m = machine(**DOG)
    notify_up(m)
    assert r(m.timer(service.T_WATCHDOG, 2.1)) == [
        "Disarm('start')", "Disarm('watchdog')", "Kill(6)", "Arm('stop', 10.000)"]
    assert (m.state, m.reason, m.last_exit) == (STOPPING, "watchdog", "watchdog")
    assert r(m.timer(T_STOP, 12.1)) == ["Kill(9)"]
    assert r(m.exited(KILLED, 12.2)) == ["Disarm('stop')", "Arm('backoff', 0.500)"]
    # The watchdog, not the SIGKILL that ended it, is the cause.
    assert (m.state, m.last_exit) == (BACKOFF, "watchdog")
    assert m.reason == "watchdog; restarting in 0.50s"


def test_unhealthy_stops_with_the_stop_signal_as_a_failure() -> None:
    m = machine()
    m.start(0.0)
    m.spawned(100, 0.0)
    m.exec_done(0.0)
    assert r(m.timer(service.T_UNHEALTHY, 5.0)) == [
        "Disarm('start')", "Kill(15)", "Arm('stop', 10.000)"]
    assert (m.state, m.reason, m.last_exit) == (STOPPING, "unhealthy", "unhealthy")
    assert r(m.exited(ExitStatus(signal=15), 5.1)) == ["Disarm('stop')",
                                                        "Arm('backoff', 0.500)"]
    assert (m.state, m.last_exit, m.restarts) == (BACKOFF, "unhealthy", 1)
    # Once stopped, a late verdict for the run that ended changes nothing.
    assert m.timer(service.T_UNHEALTHY, 5.2) == [] and m.state == BACKOFF


@pytest.mark.parametrize(("policy", "status", "watchdog", "state"), [
    ("on-watchdog", ExitStatus(signal=6), True, BACKOFF),
    ("on-watchdog", EXIT3, False, FAILED),     # a crash is not a watchdog timeout
    ("on-watchdog", EXIT0, False, DOWN),
    ("on-failure", ExitStatus(signal=6), True, BACKOFF),
    ("never", ExitStatus(signal=6), True, FAILED),
    ("always", ExitStatus(signal=6), True, BACKOFF),
])
def test_restart_after_a_watchdog_timeout(policy: str, status: ExitStatus, watchdog: bool,
                                          state: str) -> None:
    m = machine(**DOG, restart=policy)
    notify_up(m)
    if watchdog:
        m.timer(service.T_WATCHDOG, 2.1)
    m.exited(status, 2.2)
    assert m.state == state, m.reason


def test_watchdog_usec_changes_this_run_only() -> None:
    m = machine(**DOG)
    m.start(0.0)
    m.spawned(100, 0.0)
    assert m.keepalive(0.05, 7.0) == []  # before READY=1: taken for when it is up
    assert r(m.ready(0.1)) == ["Disarm('start')", "Arm('watchdog', 7.000)"]
    assert r(m.keepalive(1.0, 0.0)) == ["Disarm('watchdog')"]  # 0 turns it off
    assert m.keepalive(2.0) == []
    assert r(m.keepalive(3.0, 1.5)) == ["Arm('watchdog', 1.500)"]  # and on again
    m.stop(4.0)
    m.exited(TERMED, 4.1)
    assert notify_up(m, 5.0) == ["Disarm('start')", "Arm('watchdog', 2.000)"]


def test_leaving_up_disarms_the_watchdog() -> None:
    for leave, expected in (
        (lambda m: m.stop(1.0), "Disarm('watchdog')"),
        (lambda m: m.exited(EXIT3, 1.0), "Disarm('watchdog')"),
        (lambda m: m.spawn_failed("cannot start", 1.0), "Disarm('watchdog')"),
    ):
        m = machine(**DOG)
        notify_up(m)
        assert expected in r(leave(m))
        assert m.state != UP
    m = machine(type="notify")
    notify_up(m)
    assert "Disarm('watchdog')" not in r(m.stop(1.0))  # none armed: nothing to disarm


def test_extend_timeout_puts_the_start_timeout_off_never_earlier() -> None:
    m = machine(type="notify", start_timeout=5.0)
    m.start(0.0)
    m.spawned(100, 0.0)
    assert m.extend(3.0, 1.0) == []  # 4.0 is before 5.0: no earlier than it would have
    assert r(m.extend(8.0, 2.0)) == ["Arm('start', 8.000)"]  # now at 10.0
    assert m.extend(7.0, 2.5) == []  # 9.5: before 10.0
    assert r(m.extend(8.0, 3.0)) == ["Arm('start', 8.000)"]  # 11.0
    m.ready(4.0)
    assert m.extend(30.0, 4.5) == []  # up: no start timeout left to put off
    assert machine(type="notify", start_timeout=0.0).extend(1.0, 0.0) == []


def test_extend_timeout_while_stopping_then_not_after_the_kill() -> None:
    m = machine(type="notify", stop_timeout=2.0)
    notify_up(m)
    m.stop(1.0)
    assert r(m.extend(5.0, 1.5)) == ["Arm('stop', 5.000)"]
    assert r(m.timer(T_STOP, 6.5)) == ["Kill(9)"]
    assert m.extend(5.0, 7.0) == []  # the stop timeout has passed: SIGKILL was sent


# -- what each restart policy restarts after (systemd.service(5)'s table) -------------------

SEGV = ExitStatus(signal=11, core=True)
# end of a run -> the policies that restart after it
AFTER = {
    "exit 0": {"always", "on-success"},
    "exit 3": {"always", "on-failure"},
    "SIGSEGV": {"always", "on-failure", "on-abnormal", "on-abort"},
    "start timeout": {"always", "on-failure", "on-abnormal"},
    "watchdog": {"always", "on-failure", "on-abnormal", "on-watchdog"},
}


def end(m: Machine, how: str) -> None:
    """Start a machine and bring its run to the end named `how`."""
    if how in ("start timeout", "watchdog"):
        m.start(0.0)
        m.spawned(100, 0.0)
        if how == "watchdog":
            m.ready(0.5)
        m.timer(T_START if how == "start timeout" else service.T_WATCHDOG, 5.0)
        m.exited(TERMED if how == "start timeout" else ExitStatus(signal=6), 5.1)
    else:
        up(m)
        m.exited({"exit 0": EXIT0, "exit 3": EXIT3, "SIGSEGV": SEGV}[how], 5.0)


@pytest.mark.parametrize("policy", ["always", "on-success", "on-failure", "on-abnormal",
                                    "on-abort", "on-watchdog", "never"])
@pytest.mark.parametrize("how", sorted(AFTER))
def test_each_policy_restarts_after_what_systemd_restarts_after(policy: str, how: str) -> None:
    kind = "notify" if how in ("watchdog", "start timeout") else "simple"
    m = machine(restart=policy, type=kind, ready="notify" if kind == "notify" else "exec",
                watchdog_sec=1.0 if kind == "notify" else 0.0)
    end(m, how)
    assert (m.state == BACKOFF) == (policy in AFTER[how]), (m.state, m.reason)


def test_success_exit_status_is_a_clean_end() -> None:
    m = machine(restart="on-failure", success_exit_status=[3, 256 + 15])
    up(m)
    m.exited(EXIT3, 1.0)
    assert (m.state, m.want) == (DOWN, False), "exit 3 counts as success: not restarted"
    m = machine(restart="on-success", success_exit_status=[256 + 15])
    up(m)
    m.exited(TERMED, 1.0)
    assert m.state == BACKOFF, "SIGTERM counts as success: on-success restarts"


def test_restart_prevent_exit_status_overrides_the_policy() -> None:
    m = machine(restart="always", restart_prevent_exit_status=[255])
    up(m)
    m.exited(ExitStatus(code=255), 1.0)
    assert m.state == FAILED, "sshd's RestartPreventExitStatus=255: a bad configuration"
    m.start(2.0)
    m.spawned(101, 2.0)
    m.exec_done(2.0)
    m.exited(EXIT3, 3.0)
    assert m.state == BACKOFF, "any other end restarts as the policy says"
