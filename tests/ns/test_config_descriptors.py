"""Descriptors: a configuration that cannot fit is refused before anything starts, the budget
covers what roost really holds, and a reload that runs out midway changes nothing.

roost runs for real under a small RLIMIT_NOFILE (set for it before exec, soft = hard, so
raising the soft limit to the hard one gains nothing).
"""

from __future__ import annotations

import os
import resource
import subprocess
import time
from pathlib import Path

import pytest

from roost.config.load import load
from roost.supervise import budget
from tests.ns.supervisor_kit import ConfigDir, RawConnection, both_modes, running
from tests.support import ROOST, wait_for

pytestmark = pytest.mark.timeout(120)

LIMIT = 256


def small_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (LIMIT, LIMIT))


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_a_configuration_that_cannot_fit_starts_nothing(tmp_path: Path) -> None:
    """150 services under 256 descriptors: one clear message, exit 1, no service spawned.

    (Before the budget, the log pipes alone ran out at the 120th service: a traceback.)
    """
    config = ConfigDir(tmp_path / "conf")
    marker = tmp_path / "started"
    for index in range(150):
        config.service(f"s{index:03}", shell=True, command=f"touch {marker}; exec sleep 600")
    out = subprocess.run([*ROOST, "up", "-c", str(config.path), "--control", "@roost-fd-test"],
                         capture_output=True, text=True, timeout=60, preexec_fn=small_limit,
                         stdin=subprocess.DEVNULL)
    assert out.returncode == 1, out
    assert "Traceback" not in out.stderr, out.stderr
    need = budget.needed(load(str(config.path)).services.values(), False)
    assert (f"150 services need up to {need} file descriptors, more than roost may open "
            f"({LIMIT}; hard limit {LIMIT})") in out.stderr, out.stderr
    assert out.stderr.strip().endswith("roost: nothing started"), out.stderr
    assert len(out.stderr.splitlines()) == 2, out.stderr
    assert not marker.exists()


@both_modes
def test_the_budget_covers_what_roost_holds(tmp_path: Path, mode: str) -> None:
    """Every kind of service, running and logging to files: roost's descriptors stay within
    the budget it checked (the measurement is printed)."""
    config = ConfigDir(tmp_path / "conf")
    config.settings(log_dir=str(tmp_path / "logs"))
    say = "echo hello; exec sleep 600"
    for index in range(10):
        config.service(f"plain{index}", shell=True, command=say)
        config.service(f"notify{index}", shell=True, command=say, type="notify")
        config.service(f"fd{index}", shell=True, command=say, ready="fd:3")
    with running(config, mode, tmp_path) as roost:
        for index in range(10):
            roost.wait_state(f"plain{index}", "up")
            roost.wait_state(f"notify{index}", "starting")
            roost.wait_state(f"fd{index}", "starting")
        wait_for(lambda: len(list((tmp_path / "logs").glob("*.log"))) == 30, timeout=15,
                 what="every service's log file")
        held = open_fds(roost.pid)
        need = budget.needed(load(str(config.path)).services.values(), True)
        print(f"30 services: roost holds {held} descriptors; budget {need}")
        assert held <= need - budget.RESERVE, (held, need)


@both_modes
def test_a_reload_that_runs_out_midway_changes_nothing(tmp_path: Path, mode: str) -> None:
    """Descriptors taken by idle clients: a reload adding 20 services fails partway, replies
    with the error and leaves no service half-added; once they are free the same reload works
    (before, the added services stayed down for good and every later reload failed)."""
    config = ConfigDir(tmp_path / "conf")
    config.service("keep", command=["sleep", "600"])
    with running(config, mode, tmp_path, preexec=small_limit) as roost:
        roost.wait_state("keep", "up")
        before = roost.status("keep")["pid"]
        clients: list[RawConnection] = []
        # Leave room for the reload's own client and reader, not for 20 log pipes.
        while (held := open_fds(roost.pid)) < LIMIT - 12:
            clients.append(roost.raw())
            # One at a time: a unix socket's backlog refuses (EAGAIN) instead of waiting,
            # and roost's count lags its accept.
            deadline = time.monotonic() + 2
            while open_fds(roost.pid) <= held and time.monotonic() < deadline:
                time.sleep(0.005)
        for index in range(20):
            config.service(f"new{index:02}", command=["sleep", "600"])
        out = roost.cli("reload")
        assert out.returncode == 1, out
        assert "nothing was changed" in out.stderr, out.stderr
        assert "Too many open files" in out.stderr, out.stderr
        assert [r["name"] for r in roost.call("status")] == ["keep"]
        assert roost.status("keep")["pid"] == before
        for client in clients:
            client.close()
        wait_for(lambda: open_fds(roost.pid) < 40, timeout=10, what="the clients to go")
        out = roost.cli("reload")
        assert out.returncode == 0, out
        for index in range(20):
            roost.wait_state(f"new{index:02}", "up")
        assert roost.status("keep")["pid"] == before
        assert "Traceback" not in roost.output(), roost.output()
