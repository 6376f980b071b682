"""What a service process is given: its user, group, umask, directory and environment; a
clean signal mask and no stray descriptors. How roost itself behaves around them: asleep
when idle, and (as a subreaper) taking its services with it when it is killed."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.ns.supervisor_kit import (
    ConfigDir,
    Roost,
    both_modes,
    running,
    shared_directory,
    status_field,
)
from tests.support import proc_state, wait_for

# Each test is bounded well below the suite's timeout: a hang fails fast.
pytestmark = pytest.mark.timeout(120)

REPORT = (
    "cat /proc/self/status; echo CWD=$(pwd); echo UMASK=$(umask); env | sed 's/^/ENV /'; "
    "echo END; exec sleep 600"
)


def reported(roost: Roost, name: str) -> list[str]:
    roost.wait_output(rf"{name} \| END$")
    prefix = f" {name} | "
    return [line.split(prefix, 1)[1] for line in roost.output().splitlines() if prefix in line]


@both_modes
def test_user_group_umask_directory_environment(mode: str) -> None:
    with shared_directory() as shared_dir:
        check_attributes(shared_dir, mode)


def check_attributes(shared_dir: Path, mode: str) -> None:
    config = ConfigDir(shared_dir / "conf")
    work = shared_dir / "work"
    work.mkdir()
    config.service("attrs", command=["/bin/sh", "-c", REPORT], user="nobody", group="daemon",
                   umask="027", working_directory=str(work),
                   environment={"GREETING": "hi there", "COUNT": 3})
    config.service("plain", command=["/bin/sh", "-c", REPORT])
    # Variables addressed to roost itself must not reach its services.
    env = {**os.environ, "NOTIFY_SOCKET": "/run/elsewhere", "ROOST_CONTROL": "@elsewhere",
           "LISTEN_FDS": "3", "LISTEN_PID": "1", "INHERITED": "yes"}
    with running(config, mode, shared_dir, env=env) as roost:
        lines = reported(roost, "attrs")
        status = dict(line.split(":\t", 1) for line in lines if ":\t" in line)
        assert status["Uid"].split() == ["65534"] * 4
        assert status["Gid"].split() == ["1"] * 4
        assert status["Umask"] == "0027"
        assert f"CWD={work}" in lines
        assert "UMASK=0027" in lines
        environ = dict(line[4:].split("=", 1) for line in lines if line.startswith("ENV "))
        assert environ["GREETING"] == "hi there"
        assert environ["COUNT"] == "3"
        assert environ["INHERITED"] == "yes"
        assert (environ["USER"], environ["LOGNAME"], environ["HOME"]) == (
            "nobody", "nobody", "/nonexistent")
        for private in ("NOTIFY_SOCKET", "ROOST_CONTROL", "LISTEN_FDS", "LISTEN_PID"):
            assert private not in environ
        # Without those keys: root, roost's umask, the configuration directory.
        plain = reported(roost, "plain")
        status = dict(line.split(":\t", 1) for line in plain if ":\t" in line)
        assert status["Uid"].split() == ["0"] * 4
        assert f"CWD={config.path}" in plain
        plain_env = dict(line[4:].split("=", 1) for line in plain if line.startswith("ENV "))
        assert "GREETING" not in plain_env


def ignore_some_signals() -> None:
    """Start roost the way a careless parent might: signals ignored and blocked."""
    for signum in (signal.SIGPIPE, signal.SIGTTOU, signal.SIGTTIN, signal.SIGUSR2):
        signal.signal(signum, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGALRM, signal.SIGWINCH})


def _asleep(pid: int) -> bool:
    """True once `pid` waits in nanosleep: `sleep` has finished starting (its locale files
    are open only while it starts, so its fd table is read after that)."""
    try:
        with open(f"/proc/{pid}/wchan") as f:
            return "nanosleep" in f.read()
    except OSError:
        return False


def fds(pid: int) -> dict[int, str]:
    path = f"/proc/{pid}/fd"
    return {int(fd): os.readlink(f"{path}/{fd}") for fd in os.listdir(path)}


@both_modes
def test_clean_signals_and_no_stray_fds(tmp_path: Path, mode: str) -> None:
    config = ConfigDir(tmp_path / "conf")
    config.service("bare", command=["sleep", "600"])
    # It never says it is ready, so it stays starting: only its descriptors matter here.
    config.service("notifier", command=["sleep", "600"], ready="fd:3", start_timeout=0)
    config.service("notified", type="notify", command=["sleep", "600"], start_timeout=0)
    with running(config, mode, tmp_path, preexec=ignore_some_signals) as roost:
        roost.wait_state("bare", "up")
        pids = {name: roost.host_pid(roost.status(name)["pid"])
                for name in ("bare", "notifier", "notified")}
        # Two of them are never ready: wait until each sleeps, so that what is seen is what
        # the program kept, not roost's child on its way there nor sleep's own start-up.
        for pid in pids.values():
            wait_for(lambda p=pid: _asleep(p), timeout=10, what=f"pid {pid} to sleep")
        for name, pid in pids.items():
            assert status_field(pid, "SigBlk") == "0000000000000000", name
            assert status_field(pid, "SigIgn") == "0000000000000000", name
        for name in ("bare", "notified"):
            table = fds(pids[name])
            assert sorted(table) == [0, 1, 2], (name, table)
            assert table[0] == "/dev/null"
            # A pipe each for stdout and stderr, roost's, kept across restarts.
            assert table[1] != table[2], (name, table)
            assert table[1].startswith("pipe:") and table[2].startswith("pipe:")
        table = fds(pids["notifier"])
        assert sorted(table) == [0, 1, 2, 3], sorted(table.items())
        assert table[3].startswith("pipe:") and table[3] not in (table[1], table[2])


# A subreaper on the host may follow services through the proc connector, which hears every
# fork and exit on the machine: on a busy host that is not idleness of roost's own making.
# Inside a PID namespace the connector is silent, so there both roles can be held to zero.
@pytest.mark.parametrize("role", ["pid1", "nested"])
def test_an_idle_roost_never_wakes(tmp_path: Path, role: str) -> None:
    config = ConfigDir(tmp_path / "conf")
    config.service("bare", command=["sleep", "600"])
    config.service("notifier", command=["sleep", "600"], ready="fd:3", start_timeout=0)
    config.service("oneshot", type="oneshot", command=["true"])
    config.service("after", command=["sleep", "600"], requires=["oneshot"], wants=["bare"])
    with running(config, role, tmp_path) as roost:
        roost.wait_state("after", "up")

        # Idle: no tick, no poll. Context switches count every time roost wakes up.
        def switches() -> int:
            return sum(int(status_field(roost.pid, f"{kind}_ctxt_switches"))
                       for kind in ("voluntary", "nonvoluntary"))

        # Let it finish with the status request above (on a loaded machine, that can lag).
        def settled() -> bool:
            before = switches()
            time.sleep(0.3)
            return switches() == before

        wait_for(settled, timeout=10, what="roost to go idle")
        first = switches()
        time.sleep(3)
        assert switches() - first == 0
        if role == "nested":
            assert roost.call("ping")["pid1"] is False


def test_subreaper_services_die_with_a_killed_roost(tmp_path: Path) -> None:
    config = ConfigDir(tmp_path / "conf")
    for name in ("one", "two", "three"):
        config.service(name, command=["sleep", "600"])
    with running(config, "subreaper", tmp_path) as roost:
        pids = [roost.wait_state(n, "up")["pid"] for n in ("one", "two", "three")]
        for pid in pids:
            assert status_field(pid, "PPid") == str(roost.pid)
        roost.signal(signal.SIGKILL)
        assert roost.wait_exit(10) == -signal.SIGKILL
        # The parent-death signal: no service outlives roost.
        for pid in pids:
            wait_for(lambda p=pid: proc_state(p) in (None, "Z"), timeout=5,
                     what=f"service {pid} to die with roost")


def test_pid1_services_die_with_their_namespace(tmp_path: Path) -> None:
    config = ConfigDir(tmp_path / "conf")
    config.service("one", command=["sleep", "600"])
    with running(config, "pid1", tmp_path) as roost:
        host = roost.host_pid(roost.wait_state("one", "up")["pid"])
        assert status_field(host, "PPid") == str(roost.pid)
        roost.signal(signal.SIGKILL)
        roost.wait_exit(10)
        wait_for(lambda: proc_state(host) in (None, "Z"), timeout=5,
                 what="the service to die with its namespace")
