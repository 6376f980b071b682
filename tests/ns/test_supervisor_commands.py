"""The commands around a service's main one under a real roost (both modes).

Each command is a real process writing to a file the test reads: the order of a start
(exec_condition, exec_start_pre, the main one, exec_start_post), of a stop (exec_stop
with $MAINPID, the signal, exec_stop_post), of a crash (the same, then the restart);
what `roost status` shows while one runs; a failing one; one over its time; a stop that
cuts a start's command short and leaves nothing; `+` running as root beside `user`;
`roost reload` and its refusals.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from roost.kernel import proc
from tests.ns.supervisor_kit import ConfigDir, both_modes, running
from tests.support import wait_for

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("unshare_required")]


def note(trace: Path, word: str) -> list[str]:
    """A command that appends `word` (with $MAINPID where asked) to `trace`."""
    return ["/bin/sh", "-c", f'echo "{word}" >> {trace}']


def lines(trace: Path) -> list[str]:
    return trace.read_text().split() if trace.exists() else []


@both_modes
def test_the_order_of_a_start_a_stop_and_a_crash(tmp_path: Path, mode: str) -> None:
    trace = tmp_path / "trace"
    config = ConfigDir(tmp_path / "conf")
    # The main command writes nothing: it is ready at its exec (ready = "exec"), before a
    # line of its own could be written, so exec_start_post may well come first.
    config.service("web", command=["/bin/sleep", "60"],
                   exec_condition=note(trace, "condition"),
                   exec_start_pre=[note(trace, "pre1"), ["-/bin/false"], note(trace, "pre2")],
                   exec_start_post=note(trace, "post"),
                   exec_stop=[["/bin/sh", "-c", f"echo stop:$MAINPID >> {trace}"]],
                   exec_stop_post=note(trace, "stop-post"),
                   restart="on-failure", restart_delay=0.1)
    with running(config, mode, tmp_path) as roost:
        up = roost.wait_state("web", "up", timeout=30)
        assert lines(trace) == ["condition", "pre1", "pre2", "post"]
        pid = up["pid"]
        # A crash: exec_stop ($MAINPID empty: the main process is gone, as systemd has
        # it), exec_stop_post, then the policy restarts it, through the whole start again.
        roost.call("signal", services=["web"], signal="KILL")
        again = wait_for(lambda: (r := roost.status("web"))["state"] == "up"
                         and r["pid"] != pid and r, timeout=30, what="web restarted")
        assert isinstance(again, dict)
        assert lines(trace)[4:] == ["stop:", "stop-post", "condition", "pre1", "pre2", "post"]
        assert pid != again["pid"]
        stopped = roost.cli("stop", "web")
        assert stopped.returncode == 0, stopped
        assert lines(trace)[10:] == [f"stop:{again['pid']}", "stop-post"]
        assert roost.call("tree", services=["web"])["services"][0]["processes"] == []
        out = roost.output()
        assert "web: exec_start_pre 2 (failure ignored): exited 1" in out


@both_modes
def test_a_failing_pre_fails_the_start_and_a_condition_command_skips(tmp_path: Path,
                                                                     mode: str) -> None:
    trace = tmp_path / "trace"
    config = ConfigDir(tmp_path / "conf")
    config.service("broken", command=["/bin/sleep", "60"], restart="never",
                   exec_start_pre=["/bin/sh", "-c", "echo config error >&2; exit 3"],
                   exec_stop_post=note(trace, "cleaned"))
    config.service("skipped", command=["/bin/sleep", "60"],
                   exec_condition=["/bin/sh", "-c", "exit 1"])
    with running(config, mode, tmp_path) as roost:
        broken = roost.wait_state("broken", "failed", timeout=30)
        assert broken["last_exit"] == "exec_start_pre 1: exited 3", broken
        # exec_stop_post runs after a failed start too; its main command never ran.
        assert lines(trace) == ["cleaned"]
        assert "broken ! config error" in roost.output()
        skipped = roost.wait_state("skipped", "done", timeout=30)
        assert skipped["reason"] == "skipped: exec_condition 1: exited 1", skipped
        assert skipped["pid"] is None


@both_modes
def test_a_stop_cuts_a_slow_pre_short_and_a_command_over_its_time_is_killed(
        tmp_path: Path, mode: str) -> None:
    pids = tmp_path / "pids"
    config = ConfigDir(tmp_path / "conf")
    # The pre forks a child of its own: the stop must end its whole process group. ("$$$$":
    # roost expands "$$" to a dollar, as systemd does, so that the shell sees "$$".)
    config.service("slow", command=["/bin/sleep", "60"], exec_start_pre=[
        "/bin/sh", "-c", f"echo $$$$ > {pids}; sleep 600 & echo $! >> {pids}; wait"])
    config.service("hung", command=["/bin/sleep", "60"], start_timeout=1, restart="never",
                   exec_start_pre=["-/bin/sh", "-c", "trap '' TERM; sleep 600"])
    with running(config, mode, tmp_path) as roost:
        slow = wait_for(lambda: (r := roost.status("slow"))["step"] and len(lines(pids)) == 2
                        and r, timeout=20, what="slow's pre to run")
        assert isinstance(slow, dict)
        assert (slow["state"], slow["step"]) == ("starting", "exec_start_pre 1")
        table = roost.cli("status").stdout
        assert "running exec_start_pre 1" in table, table
        detail = roost.cli("status", "slow").stdout
        assert "running: exec_start_pre 1" in detail, detail
        hosts = [roost.host_pid(int(pid)) for pid in lines(pids)]
        assert all(proc.stat(pid) is not None for pid in hosts)
        assert roost.cli("stop", "slow").returncode == 0
        assert roost.status("slow")["state"] == "down"
        # The pre's shell and the child it forked are gone (reaped, not left as zombies).
        wait_for(lambda: all(proc.stat(pid) is None for pid in hosts), timeout=10,
                 what="the pre's processes to be gone")
        # Over its time a command is killed and that is a failure, "-" or not.
        hung = roost.wait_state("hung", "failed", timeout=30)
        assert hung["last_exit"] == "exec_start_pre 1: not done within 1s", hung


@both_modes
def test_plus_runs_as_root_beside_the_services_user(tmp_path: Path, mode: str) -> None:
    config = ConfigDir(tmp_path / "conf")
    config.service("web", command=["/bin/sh", "-c", "echo main:$(id -u); exec sleep 60"],
                   user="nobody", exec_start_pre=[["+/bin/sh", "-c", "echo plus:$(id -u)"],
                                                  ["!/bin/sh", "-c", "echo bang:$(id -u)"],
                                                  ["/bin/sh", "-c", "echo pre:$(id -u)"]])
    with running(config, mode, tmp_path) as roost:
        roost.wait_state("web", "up", timeout=30)
        roost.wait_output(r"web \| main:65534")
        out = roost.output()
        assert "web | plus:0" in out and "web | pre:65534" in out, out
        assert "web | bang:0" in out, out


@both_modes
def test_reload_runs_exec_reload_or_sends_reload_signal_or_says_why_not(tmp_path: Path,
                                                                        mode: str) -> None:
    trace = tmp_path / "trace"
    config = ConfigDir(tmp_path / "conf")
    config.service("cmd", command=["/bin/sleep", "60"],
                   exec_reload=["/bin/sh", "-c", f"echo reload:$MAINPID >> {trace}"])
    config.service("sig", command=["/bin/sh", "-c", f"trap 'echo hup >> {trace}' HUP; "
                                   "while :; do sleep 0.1; done"], reload_signal="HUP")
    config.service("none", command=["/bin/sleep", "60"])
    config.service("off", command=["/bin/sleep", "60"], autostart=False,
                   exec_reload=["/bin/true"])
    with running(config, mode, tmp_path) as roost:
        for name in ("cmd", "sig", "none"):
            roost.wait_state(name, "up", timeout=30)
        done = roost.cli("reload", "cmd")
        assert done.returncode == 0 and "cmd" in done.stdout, done
        assert lines(trace) == [f"reload:{roost.status('cmd')['pid']}"]
        assert roost.cli("reload", "sig").returncode == 0
        wait_for(lambda: "hup" in lines(trace), timeout=10, what="the trap to run")
        none = roost.cli("reload", "none")
        assert none.returncode != 0
        assert "none has neither exec_reload nor reload_signal" in none.stderr, none
        off = roost.cli("reload", "off")
        assert "off is down, not up" in off.stderr, off
        # A bad request is an error reply; roost goes on.
        assert roost.cli("reload", "nosuch").returncode != 0
        assert roost.status("cmd")["state"] == "up"


@both_modes
def test_kill_mode_mixed_terms_the_main_process_and_kills_the_rest(tmp_path: Path,
                                                                   mode: str) -> None:
    trace = tmp_path / "trace"
    # A main process that leaves a child; the child says so if a TERM reaches it.
    main = (f"sh -c 'trap \"echo $1 >> {trace}; exit 0\" TERM; while :; do sleep 0.1; done' "
            "- child & trap 'exit 0' TERM; while :; do sleep 0.1; done")
    config = ConfigDir(tmp_path / "conf")
    for name, kill_mode in (("group", "control-group"), ("mixed", "mixed")):
        config.service(name, command=["/bin/sh", "-c", main.replace("$1", name)],
                       kill_mode=kill_mode, stop_timeout=1)
    config.service("once", type="oneshot", command=["/bin/true"], remain_after_exit=True,
                   exec_stop=note(trace, "once-stopped"))
    config.service("after-once", command=["/bin/sleep", "60"], requires=["once"])
    with running(config, mode, tmp_path) as roost:
        for name in ("group", "mixed"):
            roost.wait_state(name, "up", timeout=30)
            wait_for(lambda n=name: len(roost.call("tree", services=[n])["services"][0][
                "processes"]) >= 3, timeout=10, what=f"{name}'s child")
            assert roost.cli("stop", name).returncode == 0
            assert roost.call("tree", services=[name])["services"][0]["processes"] == []
        # control-group: the child had its TERM; mixed: only the main process did, and the
        # child was killed once stop_timeout was over.
        assert lines(trace) == ["group"]
        assert "mixed: down: did not stop within 1s: killed" in roost.output()
        # remain_after_exit: the oneshot exited 0 and is up, with no process, until stopped.
        once = roost.wait_state("once", "up", timeout=30)
        assert once["pid"] is None
        roost.wait_state("after-once", "up", timeout=30)
        assert roost.cli("stop", "once").returncode == 0
        assert lines(trace) == ["group", "once-stopped"]
        assert roost.status("after-once")["state"] == "down"
