"""Crashes and restarts: growing delays, the restart limit, stop escalation, exec failures,
and processes that fork away from their service."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.ns.supervisor_kit import (
    ConfigDir,
    both_modes,
    running,
    zombies,
)
from tests.support import proc_state, wait_for

# Each test is bounded well below the suite's timeout: a hang fails fast.
pytestmark = pytest.mark.timeout(120)

CRASH = "import sys; print('crashing', flush=True); sys.exit(3)"


@both_modes
def test_crash_restarts_with_growing_delays_then_fails(tmp_path: Path, mode: str) -> None:
    config = ConfigDir(tmp_path / "conf")
    config.service("flaky", command=config.python("flaky", CRASH), restart="on-failure",
                   restart_delay=0.1, restart_delay_max=10, restart_limit=5, restart_window=60)
    with running(config, mode, tmp_path) as roost:
        record = roost.wait_state("flaky", "failed", timeout=30)
        # The delays as roost announced them: each about double the last (±20% jitter).
        delays = [float(d) for d in re.findall(
            r"flaky: backoff: exited 3; restarting in ([0-9.]+)s", roost.output())]
        assert len(delays) == 4, roost.output()
        for index, delay in enumerate(delays):
            base = 0.1 * 2**index
            assert base * 0.8 - 0.006 <= delay <= base * 1.2 + 0.006, delays
        assert delays == sorted(delays) and len(set(delays)) == 4
        assert record["reason"] == "started 5 times within 60s, giving up (last: exited 3)"
        assert record["restarts"] == 4
        assert record["last_exit"] == "exited 3"
        assert record["pid"] is None
        assert "flaky: failed: started 5 times within 60s, giving up (last: exited 3)" in (
            roost.output())
        # Five starts, five crashes: the service's own output says so.
        assert roost.output().count("flaky | crashing") == 5
        # A start by hand forgets the failure and tries again.
        roost.call("start", services=["flaky"], wait=False)
        roost.wait_state("flaky", "backoff", "starting", "up")


@both_modes
def test_restart_always_restarts_a_clean_exit(tmp_path: Path, mode: str) -> None:
    config = ConfigDir(tmp_path / "conf")
    config.service("tick", command=["true"], restart="always", restart_delay=0.05,
                   restart_delay_max=0.1, restart_limit=3, restart_window=60)
    config.service("once", command=["true"], restart="on-failure")
    with running(config, mode, tmp_path) as roost:
        record = roost.wait_state("tick", "failed", timeout=20)
        assert record["reason"] == "started 3 times within 60s, giving up (last: exited 0)"
        record = roost.wait_state("once", "down")
        assert (record["reason"], record["restarts"]) == ("exited 0", 0)


IGNORE_TERM = """
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ignoring SIGTERM", flush=True)
while True:
    time.sleep(60)
"""


@both_modes
def test_a_service_that_ignores_sigterm_is_killed_after_stop_timeout(tmp_path: Path,
                                                                      mode: str) -> None:
    config = ConfigDir(tmp_path / "conf")
    config.service("stubborn", command=config.python("stubborn", IGNORE_TERM), stop_timeout=0.5)
    with running(config, mode, tmp_path) as roost:
        roost.wait_state("stubborn", "up")
        roost.wait_output(r"stubborn \| ignoring SIGTERM")
        pid = roost.host_pid(roost.status("stubborn")["pid"])
        result = roost.cli("stop", "stubborn")
        assert result.returncode == 0, result.stderr
        record = roost.status("stubborn")
        assert record["state"] == "down"
        assert record["reason"] == "did not stop within 0.5s: killed"
        assert record["last_exit"] == "killed by SIGKILL"
        assert proc_state(pid) is None
        out = roost.output()
        assert out.index("stubborn: stopping: stopped") < out.index(
            "stubborn: down: did not stop within 0.5s: killed")


@both_modes
def test_exec_failure_is_a_service_error_not_a_crash(tmp_path: Path, mode: str) -> None:
    config = ConfigDir(tmp_path / "conf")
    # Valid when the configuration is read (a check names a missing #! interpreter);
    # broken before its start, so only the kernel can say it cannot run it.
    bad = config.script("bad.sh", "#!/bin/sh\n")
    config.service("bad", command=[bad], restart="always", autostart=False)
    gone = tmp_path / "gone"
    gone.mkdir()
    config.service("nodir", command=["true"], working_directory=str(gone), autostart=False)
    with running(config, mode, tmp_path) as roost:
        Path(bad).write_text("#!/nonexistent/interpreter\n")
        assert roost.cli("start", "bad").returncode == 1
        record = roost.wait_state("bad", "failed")
        reason = f"cannot start: exec {bad}: No such file or directory"
        assert (record["reason"], record["last_exit"], record["restarts"]) == (reason, reason, 0)
        assert f"bad: failed: {reason}" in roost.output()

        gone.rmdir()
        result = roost.cli("start", "nodir")
        assert result.returncode == 1
        record = roost.status("nodir")
        assert record["state"] == "failed"
        assert record["reason"] == f"cannot start: chdir {gone}: No such file or directory"
        assert record["restarts"] == 0
        # roost goes on serving.
        assert roost.call("ping")["protocol"] == 1


DOUBLE_FORK = """
import os, sys, time
child = os.fork()
if child == 0:
    if sys.argv[1] == "setsid":
        os.setsid()
    if os.fork() == 0:
        with open(sys.argv[2] + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.rename(sys.argv[2] + ".tmp", sys.argv[2])
        time.sleep(0.5)
        os._exit(0)
    while not os.path.exists(sys.argv[2]):
        time.sleep(0.01)
    os._exit(0)
os.waitpid(child, 0)
print("launched", flush=True)
"""


@both_modes
def test_double_fork_and_exit_leaves_no_zombie(tmp_path: Path, mode: str) -> None:
    config = ConfigDir(tmp_path / "conf")
    command = config.python("daemonize", DOUBLE_FORK)
    for variant in ("same-session", "setsid"):
        config.service(variant, command=[*command, variant, str(tmp_path / variant)],
                       restart="never")
    with running(config, mode, tmp_path) as roost:
        for variant in ("same-session", "setsid"):
            roost.wait_state(variant, "down", "failed")
            wait_for(lambda v=variant: (tmp_path / v).exists() and (tmp_path / v).read_text(),
                     timeout=10, what=f"{variant}'s grandchild")
        orphans = [int((tmp_path / v).read_text()) for v in ("same-session", "setsid")]
        # The grandchildren came home to roost and were reaped (roost may have stopped
        # them first, as what the service left behind).
        for pid in orphans:
            roost.wait_output(rf"reaped orphan {pid} \((exited 0|killed by SIGTERM)\)")
        for variant in ("same-session", "setsid"):
            assert roost.status(variant)["last_exit"] == "exited 0"
        wait_for(lambda: not roost.processes(), timeout=10, what="every process to end")
        assert zombies([roost.pid, *roost.processes()]) == []
        assert proc_state(roost.pid) not in (None, "Z")


ORPHAN = """
import os, sys, time
child = os.fork()
if child == 0:
    os.setsid()
    if os.fork() == 0:
        with open(sys.argv[1] + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.rename(sys.argv[1] + ".tmp", sys.argv[1])
        while not os.path.exists(sys.argv[1] + ".go"):
            time.sleep(0.02)
        os._exit(7)
    os._exit(0)
os.waitpid(child, 0)
while True:
    time.sleep(60)
"""


@both_modes
def test_an_orphan_of_a_service_comes_home_and_is_reaped(tmp_path: Path, mode: str) -> None:
    config = ConfigDir(tmp_path / "conf")
    marker = tmp_path / "orphan"
    config.service("parent", command=[*config.python("orphan", ORPHAN), str(marker)])
    with running(config, mode, tmp_path) as roost:
        roost.wait_state("parent", "up")
        wait_for(marker.exists, timeout=10, what="the orphan's pid")
        orphan = int(marker.read_text())
        host = roost.host_pid(orphan)
        # Its parent exited: it was re-parented to roost (PID 1 or the subreaper).
        wait_for(lambda: _ppid(host) == roost.pid, timeout=5, what="re-parenting to roost")
        (tmp_path / "orphan.go").write_text("")
        roost.wait_output(rf"reaped orphan {orphan} \(exited 7\)")
        wait_for(lambda: proc_state(host) is None, timeout=5, what="the orphan to be reaped")
        # The service itself is untouched.
        assert roost.status("parent")["state"] == "up"


def _ppid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("PPid:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None
