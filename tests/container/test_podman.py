"""`roost run` as the init of a real podman container: statuses, stop, kill, orphans, --user.

Each test runs roost from this worktree as PID 1 of a container whose root is the host's
`/` through an overlay (tests/container/podman.py); what the child reports comes back on
podman's stdout or through /shared, a directory of the test's bound into the container.
"""

from __future__ import annotations

import _signal
import time
from pathlib import Path

import pytest

from tests.container.podman import Podman
from tests.support import PYTHON, wait_for

# Record each USR1 or TERM as a line in argv[1] (exit 0 on TERM); touch argv[1].ready.
RECORDER = r"""
import signal, sys, time
out = sys.argv[1]
def record(signum, frame):
    with open(out, "a") as f:
        f.write(f"{signum}\n")
    if signum == signal.SIGTERM:
        sys.exit(0)
signal.signal(signal.SIGUSR1, record)
signal.signal(signal.SIGTERM, record)
open(out + ".ready", "w").close()
time.sleep(60)
sys.exit(3)
"""

# Leave 20 orphans that each report their parent's PID in argv[1] and exit; once all
# have, look for zombies in /proc; print their number and exit 0 only if there are none.
ORPHANS = r"""
import os, sys, time
out = sys.argv[1]
for i in range(20):
    pid = os.fork()
    if pid == 0:
        if os.fork() == 0:
            time.sleep(0.2)
            with open(f"{out}.{i}", "w") as f:
                f.write(str(os.getppid()))
        os._exit(0)
    os.waitpid(pid, 0)
end = time.monotonic() + 20
while sum(os.path.exists(f"{out}.{i}") for i in range(20)) < 20 and time.monotonic() < end:
    time.sleep(0.05)
time.sleep(0.5)
zombies = []
for entry in os.listdir("/proc"):
    if entry.isdigit():
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        if stat[stat.rindex(")") + 2] == "Z":
            zombies.append(entry)
print(f"zombies: {len(zombies)}")
sys.exit(1 if zombies else 0)
"""


def py(code: str, *args: object) -> list[str]:
    return [PYTHON, "-c", code, *(str(a) for a in args)]


@pytest.mark.parametrize("code", [0, 3, 255])
def test_exit_codes_pass_through(podman: Podman, code: int) -> None:
    ran = podman.run(["--", "sh", "-c", f"exit {code}"])
    assert ran.rc == code, ran


@pytest.mark.parametrize(("signum", "expected"), [(12, 140), (11, 139), (9, 137)])
def test_child_killed_by_signal_gives_128_plus_n(podman: Podman, signum: int,
                                                 expected: int) -> None:
    ran = podman.run(["--", "sh", "-c", f"ulimit -c 0; kill -{signum} $$"])
    assert ran.rc == expected, ran


def test_podman_stop_gives_143(podman: Podman) -> None:
    name = podman.start(["--", "sleep", "60"])
    try:
        stop = podman("stop", "--time", "30", name, check=True)
        print(f"podman stop of roost -- sleep: {stop.elapsed:.2f}s")
        assert podman.exit_code(name) == 143
        assert stop.elapsed < 25  # the TERM did it, not podman's KILL at 30 s
    finally:
        podman.remove(name)


def test_podman_stop_kills_after_its_timeout_a_child_that_ignores_term(podman: Podman) -> None:
    # roost's grace is longer than podman's timeout: the KILL is podman's, at -t.
    name = podman.start(["--grace", "60", "--", "sh", "-c", "trap '' TERM; sleep 60"])
    try:
        stop = podman("stop", "--time", "2", name, check=True)
        print(f"podman stop -t 2 of a child ignoring TERM: {stop.elapsed:.2f}s")
        assert podman.exit_code(name) == 137
        assert stop.elapsed >= 2.0, stop  # not before the timeout
    finally:
        podman.remove(name)


def test_podman_kill_usr1_reaches_the_child(podman: Podman) -> None:
    out = podman.shared / f"signals-{time.monotonic_ns()}"
    inside = f"/shared/{out.name}"
    name = podman.start(["--", *py(RECORDER, inside)])
    try:
        wait_for(lambda: Path(f"{out}.ready").exists(), timeout=30, what="child ready")
        podman("kill", "--signal", "USR1", name, check=True)
        wait_for(lambda: out.exists() and out.read_text(), timeout=10, what="USR1 recorded")
        podman("stop", "--time", "30", name, check=True)
        assert podman.exit_code(name) == 0  # the child exits 0 on the forwarded TERM
        assert out.read_text().split() == [str(_signal.SIGUSR1), str(_signal.SIGTERM)]
    finally:
        podman.remove(name)


def test_orphans_are_reaped(podman: Podman) -> None:
    out = podman.shared / f"orphans-{time.monotonic_ns()}"
    ran = podman.run(["--", *py(ORPHANS, f"/shared/{out.name}")])
    assert ran.rc == 0 and "zombies: 0" in ran.out, ran
    parents = {Path(f"{out}.{i}").read_text() for i in range(20)}
    assert parents == {"1"}, parents  # every orphan came to roost, PID 1 of the container


def test_user_and_no_new_privileges(podman: Podman) -> None:
    report = ('id -u; id -g; id -G; echo "$HOME $USER"; grep NoNewPrivs /proc/self/status; '
              "setpriv --reuid 0 id -u 2>/dev/null || echo cannot-regain-root")
    ran = podman.run(["--user", "nobody", "--no-new-privileges", "--", "sh", "-c", report])
    assert ran.rc == 0, ran
    uid, gid, groups, env, nnp, regain = ran.out.splitlines()
    assert (uid, gid, groups) == ("65534", "65534", "65534")
    assert env == "/nonexistent nobody"
    assert nnp.split() == ["NoNewPrivs:", "1"]
    assert regain == "cannot-regain-root"


def test_unknown_user_exits_2(podman: Podman) -> None:
    ran = podman.run(["--user", "nosuchuser", "--", "true"])
    assert ran.rc == 2, ran
    assert "roost run: --user: no such user: nosuchuser" in ran.out + ran.err, ran


def test_podman_stop_waits_for_the_pre_stop_delay(podman: Podman) -> None:
    name = podman.start(["--pre-stop-delay", "1.5", "--", "sleep", "60"])
    try:
        stop = podman("stop", "--time", "30", name, check=True)
        print(f"podman stop with --pre-stop-delay 1.5: {stop.elapsed:.2f}s")
        assert podman.exit_code(name) == 143
        assert 1.5 <= stop.elapsed < 25, stop  # the delay, then TERM (not podman's KILL)
    finally:
        podman.remove(name)


def test_restarts_inside_the_container(podman: Podman) -> None:
    out = podman.shared / f"runs-{time.monotonic_ns()}"
    ran = podman.run(["--restart", "on-failure", "--restart-delay", "0", "--restart-limit", "2",
                      "--", "sh", "-c", f"echo run >> /shared/{out.name}; exit 4"])
    assert ran.rc == 4, ran
    assert out.read_text().split() == ["run", "run", "run"]
