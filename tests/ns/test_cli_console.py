"""The operator's console against a real roost: `roost status` exit statuses and detail,
start/stop/restart reporting their whole transaction, audit lines, a client that falls back
to the system roost, and a second (and third) shutdown signal."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import pytest

from tests.ns.supervisor_kit import ConfigDir, both_modes, running
from tests.support import ROOST, Namespace, require_unshare, wait_for

# Each test is bounded well below the suite's timeout: a hang fails fast.
pytestmark = pytest.mark.timeout(120)

NOBODY = 65534
# Who asked, as roost logs it: a client outside roost's PID namespace has no pid there.
ROOT_PEER = r"uid 0 \(root, (pid \d+|a process outside this PID namespace)\)"

GREETER = "import time; print('hello from ok', flush=True); time.sleep(600)"
# Ready (a newline on fd 3) after a delay: a start that returns early is caught out.
READY_AFTER = "import os, sys, time; time.sleep(float(sys.argv[1])); os.write(3, b'\\n'); " \
              "time.sleep(600)"
FAIL = "import sys; sys.exit(4)"
STUBBORN = """
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ignoring SIGTERM", flush=True)
time.sleep(600)
"""


def rows(stdout: str) -> list[list[str]]:
    """The table's rows, split into words: between its header and the one-line summary."""
    lines = stdout.splitlines()
    assert lines and lines[0].split()[:2] == ["NAME", "STATE"], stdout
    return [line.split() for line in lines[1:-1]]


@both_modes
def test_status_exits_3_unless_up_and_shows_a_detail(tmp_path: Path, mode: str) -> None:
    config = ConfigDir(tmp_path / "conf")
    config.service("ok", command=config.python("greeter", GREETER))
    config.service("flaky", command=config.python("fail", FAIL), restart="never")
    config.service("idle", command=["sleep", "600"], autostart=False)
    with running(config, mode, tmp_path) as roost:
        roost.wait_state("flaky", "failed")
        roost.wait_state("ok", "up")
        roost.wait_output(r"ok \| hello from ok")

        result = roost.cli("status", "flaky")
        assert result.returncode == 3, result
        assert result.stdout.splitlines()[0] == "flaky - failed"
        assert " last exit: exited 4" in result.stdout.splitlines()
        # Every wanted service is not up: flaky is wanted and failed.
        result = roost.cli("status")
        assert result.returncode == 3, result
        header = result.stdout.splitlines()[0].split()
        assert header == ["NAME", "STATE", "PID", "UPTIME", "RESTARTS", "STATUS", "REASON"]
        assert roost.cli("status", "idle").returncode == 3
        assert roost.cli("status", "--json", "flaky").returncode == 3

        result = roost.cli("status", "ok")
        assert result.returncode == 0, result
        lines = result.stdout.splitlines()
        pid = roost.status("ok")["pid"]
        assert lines[0] == f"ok - up (pid {pid})"
        command = next(line for line in lines if line.startswith("   command: "))
        assert command.endswith("greeter.py"), command
        assert "      type: simple" in lines
        assert any(line.startswith("     since: ") for line in lines)
        assert "processes:" in result.stdout and f"{pid}*" in result.stdout
        assert lines[-1].endswith("hello from ok")

        # Anyone may read the state, not the command, processes or output.
        result = roost.cli("status", "ok", user=NOBODY)
        assert result.returncode == 0, result
        assert "hello from ok" not in result.stdout and "command:" not in result.stdout
        assert result.stdout.splitlines()[-1] == (
            "  (its command, processes and log: for root and the control group)")

        # Stopped on purpose, flaky is no longer wanted: everything wanted is up.
        assert roost.cli("stop", "flaky").returncode == 0
        result = roost.cli("status")
        assert result.returncode == 0, result


@both_modes
def test_start_stop_restart_report_their_whole_transaction(tmp_path: Path, mode: str) -> None:
    config = ConfigDir(tmp_path / "conf")
    config.service("db", command=[*config.python("ready", READY_AFTER), "0.2"], ready="fd:3")
    config.service("migrate", type="oneshot", command=["true"], requires=["db"])
    config.service("web", command=[*config.python("ready", READY_AFTER), "1.5"], ready="fd:3",
                   requires=["db", "migrate"])
    config.service("bad", command=config.python("fail", FAIL), ready="fd:3", restart="never",
                   autostart=False)
    config.service("broken", command=["sleep", "600"], requires=["bad"], autostart=False)
    with running(config, mode, tmp_path) as roost:
        roost.wait_state("web", "up", timeout=30)
        old = roost.status("web")["pid"]

        # `roost restart db && curl`: when it returns, web (which requires db) is up again.
        result = roost.cli("restart", "db")
        assert result.returncode == 0, result
        web = roost.status("web")
        assert (web["state"], web["pid"] != old) == ("up", True), web
        assert [r[:2] for r in rows(result.stdout)] == [["db", "up"], ["migrate", "done"],
                                                        ["web", "up"]]
        assert result.stdout.splitlines()[-1] == (
            "restarted db and 2 services that require it: all up or done")
        roost.wait_output(rf"restart db by {ROOT_PEER}$")

        result = roost.cli("stop", "db")
        assert result.returncode == 0, result
        assert [r[:2] for r in rows(result.stdout)] == [["db", "down"], ["migrate", "down"],
                                                        ["web", "down"]]
        assert result.stdout.splitlines()[-1] == (
            "stopped db and 2 services that require it: all down")
        roost.wait_output(rf"stop db by {ROOT_PEER}$")

        result = roost.cli("start", "web")
        assert result.returncode == 0, result
        assert [r[:2] for r in rows(result.stdout)] == [["web", "up"], ["db", "up"],
                                                        ["migrate", "done"]]
        assert result.stdout.splitlines()[-1] == (
            "started web and 2 services it requires: all up or done")

        # A start that cannot do what was asked says what went wrong, and exits 1.
        result = roost.cli("start", "broken", "--timeout", "20")
        assert result.returncode == 1, result
        assert result.stdout.splitlines()[-1] == (
            "start broken: not done: broken down (requirement bad failed), "
            "bad failed (exited 4)")

        # Out of time: what each touched service is doing, and nothing cancelled.
        result = roost.cli("restart", "web", "--timeout", "0.2")
        assert result.returncode == 1, result
        # web takes 1.5 s to be ready: it is starting then (or, on a slow machine, stopping).
        assert re.fullmatch(r"roost: not settled within 0\.2s \(still in progress; now: "
                            r"web (starting|stopping)\)\n", result.stderr), result.stderr
        roost.wait_state("web", "up")

        result = roost.cli("stop", "--no-wait", "web")
        assert result.returncode == 0, result
        assert result.stdout.splitlines()[-1].startswith("stop web: asked, not waiting")


@both_modes
def test_reloads_are_logged_in_words_with_who_asked(tmp_path: Path, mode: str) -> None:
    config = ConfigDir(tmp_path / "conf")
    config.service("svc", command=["sleep", "600"])
    with running(config, mode, tmp_path) as roost:
        roost.wait_state("svc", "up")
        roost.signal(signal.SIGHUP)
        roost.wait_output(r"reloaded on SIGHUP: nothing changed$")
        config.service("extra", command=["sleep", "600"])
        assert roost.cli("reload").returncode == 0
        roost.wait_output(rf"reloaded by {ROOT_PEER}: added: extra$")
        assert "reloaded: {" not in roost.output()
        assert roost.cli("signal", "CONT", "svc").returncode == 0
        roost.wait_output(rf"signal SIGCONT to svc by {ROOT_PEER}$")
        assert roost.cli("shutdown").returncode == 0
        assert roost.wait_exit() == 0
        assert re.search(rf"shutdown requested by {ROOT_PEER}: stopping all services$",
                         roost.output(), re.MULTILINE), roost.output()


def stubborn_pair(config: ConfigDir) -> None:
    # Both ignore SIGTERM; `after` must stop before `stubborn`, which it requires.
    config.service("stubborn", command=config.python("stubborn", STUBBORN), stop_timeout=100)
    config.service("after", command=config.python("stubborn", STUBBORN), stop_timeout=100,
                   requires=["stubborn"])


@both_modes
def test_a_second_signal_forces_the_stop(tmp_path: Path, mode: str) -> None:
    config = ConfigDir(tmp_path / "conf")
    stubborn_pair(config)
    with running(config, mode, tmp_path) as roost:
        roost.wait_state("after", "up")
        wait_for(lambda: roost.output().count("| ignoring SIGTERM") == 2, what="both services")
        roost.signal(signal.SIGTERM)
        roost.wait_output(r"SIGTERM received: stopping all services$")
        began = time.monotonic()
        roost.signal(signal.SIGINT)
        # Without the force, this waits out stop_timeout (100 s) for each of them.
        assert roost.wait_exit(timeout=30) == 0
        print(f"forced stop took {time.monotonic() - began:.2f}s")
        out = roost.output()
        assert re.search(r"SIGINT received while stopping: forcing the stop, SIGKILL to "
                         r"(after, stubborn|stubborn, after)$", out, re.MULTILINE), out
        assert "all services stopped" in out


@both_modes
def test_a_third_signal_leaves_at_once(tmp_path: Path, mode: str) -> None:
    config = ConfigDir(tmp_path / "conf")
    stubborn_pair(config)
    with running(config, mode, tmp_path) as roost:
        roost.wait_state("after", "up")
        # Held stopped, roost finds three signals pending at once when it goes on: the
        # third comes before the SIGKILL of the second could have ended anything.
        roost.signal(signal.SIGSTOP)
        wait_for(lambda: _state(roost.pid) == "T", what="roost stopped")
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
            roost.signal(signum)
        roost.signal(signal.SIGCONT)
        assert roost.wait_exit(timeout=30) == 1
        out = roost.output()
        assert "forcing the stop" in out, out
        assert re.search(r"SIG[A-Z]+ received again: leaving now, without waiting for ", out), out
        assert "all services stopped" not in out


def _state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0]
    except OSError:
        return None


FALLBACK = r"""
set -u
mount -t tmpfs -o mode=0755 roost-test /run || exit 90
$ROOST up -c "$CONF" --control /run/roost/control > "$OUT/roost.out" 2>&1 &
roost=$!
i=0
until [ -S /run/roost/control ]; do
    i=$((i + 1)); [ $i -gt 600 ] && exit 91
    sleep 0.05
done
as_nobody() {
    env -u ROOST_CONTROL XDG_RUNTIME_DIR=/run/user/65534 \
        setpriv --reuid 65534 --regid 65534 --clear-groups $ROOST "$@"
}
as_nobody status svc > "$OUT/found.out" 2> "$OUT/found.err"; echo $? > "$OUT/found.rc"
kill $roost; wait $roost
as_nobody status > "$OUT/none.out" 2> "$OUT/none.err"; echo $? > "$OUT/none.rc"
"""


def test_a_user_without_a_roost_of_their_own_reaches_the_systems(tmp_path: Path) -> None:
    require_unshare()
    config = ConfigDir(tmp_path / "conf")
    config.service("svc", command=["sleep", "600"])
    out = tmp_path / "out"
    out.mkdir()
    # /run is a tmpfs of the namespace's own mount namespace: nothing reaches the host's.
    env = {**os.environ, "ROOST": " ".join(ROOST), "CONF": str(config.path), "OUT": str(out)}
    with Namespace(["/bin/sh", "-c", FALLBACK], env=env) as ns:
        assert ns.wait(timeout=60) == 0, (out / "roost.out").read_text()

    def read(name: str) -> str:
        return (out / name).read_text()

    assert read("found.rc") == "0\n", read("found.err")
    assert read("found.err") == ("roost: no roost of yours answers on "
                                 "/run/user/65534/roost/control; using the system's on "
                                 "/run/roost/control\n")
    assert read("found.out").startswith("svc - up (pid ")
    # Neither answers: where it looked, and what to pass.
    assert read("none.rc") == "1\n"
    assert read("none.out") == ""
    assert read("none.err") == ("roost: roost is not running: nothing listens on "
                                "/run/user/65534/roost/control nor on /run/roost/control; "
                                "pass --control ADDR (or set ROOST_CONTROL) to reach another "
                                "roost\n")


def test_a_planted_socket_is_refused_not_skipped(tmp_path: Path) -> None:
    # The user's own address, answered by someone else: no quiet fall-back past it.
    from roost.control.client import Client, Untrusted

    sock_dir = tmp_path / "planted"
    sock_dir.mkdir(mode=0o777)
    sock_dir.chmod(0o777)
    client = Client(None)
    client.candidates = [str(sock_dir / "control"), "@roost-test-never-reached"]
    with pytest.raises(Untrusted):
        client.connect()

