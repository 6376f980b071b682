"""The commands around a service's main one, as the machine sequences them (core/commands.py).

Pure: the machine is driven with events and a fake clock; each test names the rule of
systemd.service(5) it holds roost to. `expand` (supervise/around.py) is the run-time
`$VAR` rule.
"""

from __future__ import annotations

from roost.core.actions import Arm, Check, Disarm, Kill, KillCommand, RunCommand, Spawn
from roost.core.exits import ExitStatus
from roost.core.machine import BACKOFF, DONE, DOWN, FAILED, STARTING, STOPPING, UP, Machine
from roost.supervise.around import expand
from tests.unit.test_service import config

OK = ExitStatus(code=0)
BAD = ExitStatus(code=1)
TERMED = ExitStatus(signal=15)
ONE = [["", ["/bin/true"]]]
TWO = [["", ["/bin/a"]], ["", ["/bin/b"]]]


def shown(actions: list[object]) -> list[str]:
    return [repr(a) for a in actions]


def machine(**values: object) -> Machine:
    return Machine(config(**values), 0.0, rng=lambda: 0.5)


def runs(actions: list[object]) -> list[tuple[str, int]]:
    return [(a.key, a.index) for a in actions if isinstance(a, RunCommand)]


def test_a_start_runs_condition_pre_main_post_then_is_up() -> None:
    m = machine(exec_condition=ONE, exec_start_pre=TWO, exec_start_post=ONE)
    assert runs(m.start(1.0)) == [("exec_condition", 0)]
    assert (m.state, m.step) == (STARTING, "exec_condition")
    assert runs(m.command_exited(OK, 1.1)) == [("exec_start_pre", 0)]
    assert runs(m.command_exited(OK, 1.2)) == [("exec_start_pre", 1)]
    assert any(isinstance(a, Spawn) for a in m.command_exited(OK, 1.3))
    m.spawned(42, 1.3)
    # Ready (the exec, for a simple service) is not up yet: exec_start_post comes first.
    assert runs(m.exec_done(1.4)) == [("exec_start_post", 0)]
    assert (m.state, m.step) == (STARTING, "exec_start_post")
    m.command_exited(OK, 1.5)
    assert (m.state, m.step, m.pid) == (UP, "", 42)


def test_each_command_has_its_own_time() -> None:
    m = machine(exec_start_pre=ONE, start_timeout=7.0, exec_stop=ONE, stop_timeout=3.0)
    arms = [(a.name, a.delay) for a in m.start(1.0) if isinstance(a, Arm)]
    assert arms == [("command", 7.0)]
    m.command_exited(OK, 1.1)
    m.spawned(5, 1.1)
    m.exec_done(1.2)
    arms = [(a.name, a.delay) for a in m.stop(2.0) if isinstance(a, Arm)]
    assert arms == [("command", 3.0)] and m.step == "exec_stop"
    # Over time: killed, and the stop goes on to the stop signal.
    assert [a.signal for a in m.timer("command", 5.0) if isinstance(a, KillCommand)] == [9]
    kill = m.command_exited(ExitStatus(signal=9), 5.1)
    assert [a.signal for a in kill if isinstance(a, Kill)] == [15]
    assert "exec_stop 1: not done within 3s" in m.reason
    m2 = machine(exec_start_pre=ONE, start_timeout=0.0)
    assert not [a for a in m2.start(1.0) if isinstance(a, Arm)]  # 0: no limit


def test_a_command_over_its_time_is_killed_and_fails_even_with_a_dash() -> None:
    m = machine(exec_start_pre=[["-", ["/bin/slow"]]], start_timeout=2.0, restart="never")
    m.start(1.0)
    killed = m.timer("command", 3.0)
    assert [(type(a), a.signal) for a in killed if isinstance(a, KillCommand)] == \
        [(KillCommand, 9)]
    m.command_exited(ExitStatus(signal=9), 3.1)
    assert (m.state, m.last_exit) == (FAILED, "exec_start_pre 1: not done within 2s")


def test_a_failing_pre_fails_the_start_and_the_policy_restarts_it() -> None:
    m = machine(exec_start_pre=ONE, restart="on-failure")
    m.start(1.0)
    actions = m.command_exited(BAD, 1.1)
    assert m.state == BACKOFF and m.last_exit == "exec_start_pre 1: exited 1"
    assert not any(isinstance(a, Spawn) for a in actions)


def test_a_dash_ignores_a_failure() -> None:
    m = machine(exec_start_pre=[["-", ["/bin/false"]], ["", ["/bin/true"]]])
    m.start(1.0)
    assert runs(m.command_exited(BAD, 1.1)) == [("exec_start_pre", 1)]
    assert any(isinstance(a, Spawn) for a in m.command_exited(OK, 1.2))


def test_exec_condition_1_to_254_skips_255_fails() -> None:
    m = machine(exec_condition=ONE)
    m.start(1.0)
    m.command_exited(ExitStatus(code=1), 1.1)
    assert (m.state, m.reason) == (DONE, "skipped: exec_condition 1: exited 1")
    m = machine(exec_condition=ONE, restart="never")
    m.start(1.0)
    m.command_exited(ExitStatus(code=255), 1.1)
    assert m.state == FAILED


def test_conditions_are_looked_at_before_any_command() -> None:
    m = machine(conditions=[["condition_path_exists", "/x"]], exec_start_pre=ONE)
    assert shown(m.start(1.0)) == shown([Check()])
    assert runs(m.checked(1.1)) == [("exec_start_pre", 0)]
    # A skip now is not possible: a command runs.
    assert m.skipped("skipped", 1.2) == [] and m.state == STARTING


def test_a_stop_runs_exec_stop_then_the_signal_then_exec_stop_post() -> None:
    m = machine(exec_stop=ONE, exec_stop_post=TWO)
    m.start(1.0)
    m.spawned(7, 1.0)
    m.exec_done(1.1)
    assert runs(m.stop(2.0)) == [("exec_stop", 0)]
    # The main process ends while exec_stop runs: the stop waits for the command.
    assert m.exited(TERMED, 2.1) == []
    kill = m.command_exited(OK, 2.2)
    assert [a.signal for a in kill if isinstance(a, Kill)] == [15]
    assert runs(m.gone(2.3)) == [("exec_stop_post", 0)]
    assert m.gone(2.35) == []  # a command runs: the service is not done stopping
    assert runs(m.command_exited(OK, 2.4)) == [("exec_stop_post", 1)]
    assert m.state == STOPPING
    m.command_exited(OK, 2.5)
    assert (m.state, m.reason) == (DOWN, "stopped")


def test_a_failing_stop_command_is_shown_and_the_rest_of_its_list_skipped() -> None:
    # systemd's rule: the stop goes on to its next phase; the list's other commands are not run.
    m = machine(exec_stop=TWO, exec_stop_post=TWO)
    m.start(1.0)
    m.spawned(7, 1.0)
    m.exec_done(1.1)
    m.stop(2.0)
    kill = m.command_exited(BAD, 2.1)
    assert runs(kill) == [] and [a.signal for a in kill if isinstance(a, Kill)] == [15]
    assert runs(m.exited(TERMED, 2.2)) == [("exec_stop_post", 0)]
    assert runs(m.command_exited(BAD, 2.3)) == []
    assert m.state == DOWN
    assert m.reason == "stopped; exec_stop 1: exited 1; exec_stop_post 1: exited 1"


def test_exec_stop_is_for_a_run_that_was_up() -> None:
    m = machine(exec_stop=ONE, exec_stop_post=ONE, ready="fd:3", restart="never")
    m.start(1.0)
    m.spawned(7, 1.0)
    actions = m.stop(2.0)  # not up yet: no exec_stop, straight to the signal
    assert runs(actions) == [] and any(isinstance(a, Kill) for a in actions)
    # ... but exec_stop_post is owed: a command of this run ran.
    assert runs(m.exited(TERMED, 2.1)) == [("exec_stop_post", 0)]
    m.command_exited(OK, 2.2)
    assert m.state == DOWN


def test_a_crash_goes_through_exec_stop_and_post_before_the_policy() -> None:
    m = machine(exec_stop=ONE, exec_stop_post=ONE, restart="on-failure")
    m.start(1.0)
    m.spawned(7, 1.0)
    m.exec_done(1.1)
    assert runs(m.exited(ExitStatus(code=3), 5.0)) == [("exec_stop", 0)]
    assert m.state == STOPPING
    m.command_exited(OK, 5.1)
    assert runs(m.gone(5.2)) == [("exec_stop_post", 0)]
    m.command_exited(OK, 5.3)
    assert (m.state, m.last_exit) == (BACKOFF, "exited 3")


def test_a_stop_during_a_pre_cuts_it_short() -> None:
    m = machine(exec_start_pre=ONE, exec_stop=ONE, exec_stop_post=ONE)
    m.start(1.0)
    actions = m.stop(1.5)
    assert [a.signal for a in actions if isinstance(a, KillCommand)] == [15]
    assert runs(actions) == []  # no exec_stop: it was never up
    assert m.gone(1.6) == []  # the pre still runs
    assert shown(m.command_exited(TERMED, 1.7)) == shown([Disarm("command")])
    assert runs(m.gone(1.8)) == [("exec_stop_post", 0)]
    m.command_exited(OK, 1.9)
    assert m.state == DOWN


def test_reload_runs_exec_reload_and_stays_up() -> None:
    m = machine(exec_reload=TWO)
    m.start(1.0)
    m.spawned(7, 1.0)
    m.exec_done(1.1)
    assert runs(m.reload(2.0)) == [("exec_reload", 0)]
    assert m.reload(2.0) == []  # one at a time
    assert runs(m.command_exited(OK, 2.1)) == [("exec_reload", 1)]
    m.command_exited(BAD, 2.2)
    assert (m.state, m.reason) == (UP, "reload failed: exec_reload 2: exited 1")
    m.reload(3.0)
    m.command_exited(OK, 3.1)
    m.command_exited(OK, 3.2)
    assert (m.state, m.reason) == (UP, "")
    assert machine().reload(1.0) == []  # nothing to run


def test_a_oneshot_runs_its_post_after_its_exit_then_is_done() -> None:
    m = machine(type="oneshot", restart="never", exec_start_post=ONE)
    m.start(1.0)
    m.spawned(7, 1.0)
    assert runs(m.exited(OK, 1.1)) == [("exec_start_post", 0)]
    assert m.state == STARTING
    m.command_exited(OK, 1.2)
    assert m.state == DONE


def test_a_post_failure_stops_the_running_main_process() -> None:
    m = machine(exec_start_post=ONE, restart="never")
    m.start(1.0)
    m.spawned(7, 1.0)
    m.exec_done(1.1)
    actions = m.command_exited(BAD, 1.2)
    assert m.state == STOPPING and any(isinstance(a, Kill) for a in actions)
    m.exited(TERMED, 1.3)
    assert (m.state, m.last_exit) == (FAILED, "exec_start_post 1: exited 1")


def test_a_command_that_cannot_start_is_a_failure() -> None:
    m = machine(exec_start_pre=ONE, restart="never")
    m.start(1.0)
    m.command_exited(ExitStatus(code=127), 1.1, "cannot start: No such file or directory")
    assert (m.state, m.last_exit) == (FAILED, "exec_start_pre 1: cannot start: No such file "
                                              "or directory")


def test_expand_is_systemds_rule() -> None:
    env = {"OPTS": "-a  -b", "EMPTY": "", "MAINPID": "42"}
    assert expand(["/bin/kill", "-HUP", "$MAINPID"], env) == ["/bin/kill", "-HUP", "42"]
    # A whole-word $VAR splits into words, or none; ${VAR} inside a word stays one word.
    assert expand(["d", "$OPTS", "$EMPTY", "$UNSET", "x${OPTS}y"], env) == \
        ["d", "-a", "-b", "x-a  -by"]
    assert expand(["sh", "-c", "echo $$HOME ${MAINPID}"], env) == ["sh", "-c", "echo $HOME 42"]
    plain = ["a", "b"]
    assert expand(plain, env) is plain


def kills(actions: list[object]) -> list[tuple[int, bool]]:
    return [(a.signal, a.main_only) for a in actions if isinstance(a, Kill)]


def up(**values: object) -> Machine:
    m = machine(**values)
    m.start(1.0)
    m.spawned(7, 1.0)
    m.exec_done(1.1)
    return m


def test_kill_mode_says_whom_the_stop_and_the_final_kill_reach() -> None:
    # systemd's KillMode=: control-group signals all; mixed TERMs the main process, and the
    # final SIGKILL goes to all; process signals the main process only, both times.
    for mode, first, final in (("control-group", False, False), ("mixed", True, False),
                               ("process", True, True)):
        m = up(kill_mode=mode, stop_timeout=2.0)
        assert kills(m.stop(2.0)) == [(15, first)], mode
        assert kills(m.timer("stop", 4.0)) == [(9, final)], mode


def test_final_kill_signal_and_send_sigkill() -> None:
    m = up(final_kill_signal=3, stop_timeout=1.0)
    m.stop(2.0)
    assert kills(m.timer("stop", 3.0)) == [(3, False)]
    assert m.reason == "did not stop within 1s: killed"
    m = up(send_sigkill=False, stop_timeout=1.0)
    m.stop(2.0)
    assert m.timer("stop", 3.0) == []
    assert (m.state, m.reason) == (STOPPING, "did not stop within 1s; send_sigkill = false: "
                                             "waiting for it to end")
    m.exited(TERMED, 9.0)
    assert m.state == DOWN


def test_remain_after_exit_keeps_a_oneshot_up_until_it_is_stopped() -> None:
    m = machine(type="oneshot", restart="never", remain_after_exit=True, exec_stop=ONE)
    m.start(1.0)
    m.spawned(7, 1.0)
    m.exited(OK, 1.5)
    assert (m.state, m.pid) == (UP, None)
    # Stopped, it runs its exec_stop (it was up), then is down.
    assert runs(m.stop(2.0)) == [("exec_stop", 0)]
    m.command_exited(OK, 2.1)
    m.gone(2.2)
    assert m.state == DOWN
