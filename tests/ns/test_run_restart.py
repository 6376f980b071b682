"""`roost run --restart` and `--pre-stop-delay`, as PID 1 of a PID namespace.

The children stamp each start (or each signal) with the monotonic clock, which the
namespace shares with the test, so back-off and drain delays are measured: printed,
and asserted only as lower bounds (a timer never fires early) with wide upper ones.
"""

from __future__ import annotations

import _signal
import itertools
import os
import select
import subprocess
import time
from pathlib import Path

import pytest

from tests.support import PYTHON, ROOST, Namespace, descendants, proc_state, run_ns, wait_for

pytestmark = pytest.mark.usefixtures("unshare_required")

RUN_DEADLINE = 20.0

# Append a start stamp to argv[1]; run N exits with argv[2:][N-1] (the last repeats).
COUNTER = r"""
import sys, time
out, codes = sys.argv[1], [int(c) for c in sys.argv[2:]]
with open(out, "a") as f:
    f.write(f"{time.monotonic()}\n")
with open(out) as f:
    runs = len(f.read().split())
sys.exit(codes[min(runs, len(codes)) - 1])
"""

# Stamp the start in argv[1]; the first run exits 1, later ones record "SIGNUM TIME" in
# argv[1].sig for USR1 and TERM (exiting 0 on TERM), touch argv[1].ready, and wait.
FLAKY_THEN_STEADY = r"""
import os, signal, sys, time
out = sys.argv[1]
with open(out, "a") as f:
    f.write(f"{time.monotonic()}\n")
with open(out) as f:
    if len(f.read().split()) == 1:
        sys.exit(1)
def record(signum, frame):
    with open(out + ".sig", "a") as f:
        f.write(f"{signum} {time.monotonic()}\n")
    if signum == signal.SIGTERM:
        sys.exit(0)
signal.signal(signal.SIGUSR1, record)
signal.signal(signal.SIGTERM, record)
open(out + ".ready", "w").close()
time.sleep(60)
sys.exit(3)
"""

# Record "SIGNUM TIME" in argv[1] for USR1 and TERM (exit 0 on TERM); on USR1 also leave
# an orphan that touches argv[1].orphan and exits. Touch argv[1].ready once armed.
RECORDER = r"""
import os, signal, sys, time
out = sys.argv[1]
def record(signum, frame):
    with open(out, "a") as f:
        f.write(f"{signum} {time.monotonic()}\n")
    if signum == signal.SIGTERM:
        sys.exit(0)
    if os.fork() == 0:
        if os.fork() == 0:
            time.sleep(0.2)
            open(out + ".orphan", "w").close()
        os._exit(0)
    os.wait()
signal.signal(signal.SIGUSR1, record)
signal.signal(signal.SIGTERM, record)
open(out + ".ready", "w").close()
end = time.monotonic() + 60
while time.monotonic() < end:
    time.sleep(0.05)
sys.exit(3)
"""


def roost(*args: str) -> list[str]:
    return [*ROOST, "run", *args]


def py(code: str, *args: object) -> list[str]:
    return [PYTHON, "-c", code, *(str(a) for a in args)]


def stamps(path: Path) -> list[float]:
    return [float(x) for x in path.read_text().split()] if path.exists() else []


def signals(path: Path) -> list[tuple[int, float]]:
    if not path.exists():
        return []
    return [(int(n), float(t)) for n, t in (line.split() for line in path.read_text().splitlines())]


def gaps(times: list[float]) -> list[float]:
    return [round(b - a, 3) for a, b in itertools.pairwise(times)]


def read_until(ns: Namespace, text: str, timeout: float = 10.0) -> str:
    """Read roost's stderr until `text` appears; fail after `timeout`."""
    assert ns.proc.stderr is not None
    fd = ns.proc.stderr.fileno()
    seen = b""
    deadline = time.monotonic() + timeout
    while text.encode() not in seen:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise AssertionError(f"no {text!r} on stderr within {timeout}s: {seen!r}")
        chunk = os.read(fd, 4096)
        if not chunk:
            raise AssertionError(f"stderr closed before {text!r}: {seen!r}")
        seen += chunk
    return seen.decode()


# -- restart --------------------------------------------------------------------------------


def test_on_failure_restarts_with_doubling_delay_up_to_the_limit(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    ran = run_ns(roost("--restart", "on-failure", "--restart-delay", "0.2",
                       "--restart-max-delay", "0.5", "--restart-limit", "3",
                       "--", *py(COUNTER, out, 3)))
    times = stamps(out)
    print(f"restart gaps (delays 0.2, 0.4, 0.5): {gaps(times)}")
    assert ran.rc == 3, ran
    assert len(times) == 4, ran
    for gap, delay in zip(gaps(times), (0.2, 0.4, 0.5), strict=True):
        assert delay <= gap < delay + 10, (gaps(times), ran)
    assert "--restart-limit 3 reached" in ran.err, ran


def test_on_failure_ends_with_the_first_success(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    ran = run_ns(roost("--restart", "on-failure", "--restart-delay", "0",
                       "--", *py(COUNTER, out, 1, 2, 0, 5)))
    assert ran.rc == 0, ran
    assert len(stamps(out)) == 3, ran


def test_always_restarts_a_success_too(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    ran = run_ns(roost("--restart", "always", "--restart-delay", "0", "--restart-limit", "2",
                       "--", *py(COUNTER, out, 0, 0, 4)))
    assert ran.rc == 4, ran  # the last child's status
    assert len(stamps(out)) == 3, ran


def test_limit_zero_never_restarts(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    ran = run_ns(roost("--restart", "always", "--restart-limit", "0", "--", *py(COUNTER, out, 6)))
    assert ran.rc == 6, ran
    assert len(stamps(out)) == 1, ran


def test_a_command_that_cannot_run_is_not_restarted(tmp_path: Path) -> None:
    script = tmp_path / "script"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o644)
    ran = run_ns(roost("--restart", "always", "--restart-delay", "0", "--", str(script)))
    assert ran.rc == 126, ran
    assert "not restarting: the command cannot be started" in ran.err, ran


def test_restarted_child_gets_signals_and_term_stops_it_for_good(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    sig = Path(f"{out}.sig")
    argv = roost("--restart", "always", "--restart-delay", "0.1", "--",
                 *py(FLAKY_THEN_STEADY, out))
    with Namespace(argv, stderr=subprocess.PIPE) as ns:
        wait_for(lambda: Path(f"{out}.ready").exists(), what="the restarted child")
        ns.signal(_signal.SIGUSR1)
        wait_for(lambda: signals(sig), what="USR1 in the restarted child")
        ns.signal(_signal.SIGTERM)
        # The child exits 0 on TERM; with --restart always it would run again, but a
        # TERM to roost ends the restarts: roost exits with that last status.
        assert ns.wait(timeout=RUN_DEADLINE) == 0
    assert [n for n, _ in signals(sig)] == [_signal.SIGUSR1, _signal.SIGTERM]
    assert len(stamps(out)) == 2


def test_term_during_the_restart_delay_exits_with_the_last_status(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    argv = roost("--restart", "always", "--restart-delay", "30", "--", *py(COUNTER, out, 5))
    with Namespace(argv, stderr=subprocess.PIPE) as ns:
        read_until(ns, "restart 1 in 30s")
        sent = time.monotonic()
        ns.signal(_signal.SIGTERM)
        assert ns.wait(timeout=RUN_DEADLINE) == 5
        assert time.monotonic() - sent < 10  # not the 30 s delay
    assert len(stamps(out)) == 1


def test_bad_restart_input_is_one_line_and_exit_2() -> None:
    for args in (["--restart", "always", "--restart-delay", "-1"], ["--restart-limit", "3"]):
        ran = subprocess.run([*roost(*args, "--", "true")], capture_output=True, text=True,
                             timeout=20, check=False)
        assert ran.returncode == 2, ran
        assert ran.stderr.count("\n") == 1 and ran.stderr.startswith("roost run: --restart"), ran


# -- pre-stop delay ---------------------------------------------------------------------------


def test_pre_stop_delay_holds_term_and_forwards_the_rest(tmp_path: Path) -> None:
    out = tmp_path / "signals"
    argv = roost("--pre-stop-delay", "1.5", "--grace", "30", "--", *py(RECORDER, out))
    with Namespace(argv, stderr=subprocess.PIPE) as ns:
        wait_for(lambda: Path(f"{out}.ready").exists(), what="child ready")
        sent = time.monotonic()
        ns.signal(_signal.SIGTERM)
        read_until(ns, "forwarding it in 1.5s")
        ns.signal(_signal.SIGUSR1)
        assert ns.wait(timeout=RUN_DEADLINE) == 0
    got = signals(out)
    assert [n for n, _ in got] == [_signal.SIGUSR1, _signal.SIGTERM], got
    held = got[1][1] - sent
    print(f"TERM reached the child {held:.3f}s after roost got it (--pre-stop-delay 1.5)")
    assert 1.5 <= held < 11.5
    assert got[0][1] - sent < 1.5  # USR1 was not held with it


def test_second_term_is_forwarded_at_once(tmp_path: Path) -> None:
    out = tmp_path / "signals"
    argv = roost("--pre-stop-delay", "60", "--", *py(RECORDER, out))
    with Namespace(argv, stderr=subprocess.PIPE) as ns:
        wait_for(lambda: Path(f"{out}.ready").exists(), what="child ready")
        ns.signal(_signal.SIGTERM)
        read_until(ns, "forwarding it in 60s")
        second = time.monotonic()
        ns.signal(_signal.SIGTERM)
        assert ns.wait(timeout=RUN_DEADLINE) == 0
        assert time.monotonic() - second < 10
    assert [n for n, _ in signals(out)] == [_signal.SIGTERM]


def test_orphans_are_reaped_during_the_delay(tmp_path: Path) -> None:
    out = tmp_path / "signals"
    argv = roost("--pre-stop-delay", "60", "--", *py(RECORDER, out))
    with Namespace(argv, stderr=subprocess.PIPE) as ns:
        wait_for(lambda: Path(f"{out}.ready").exists(), what="child ready")
        ns.signal(_signal.SIGTERM)
        read_until(ns, "forwarding it in 60s")
        ns.signal(_signal.SIGUSR1)
        wait_for(lambda: Path(f"{out}.orphan").exists(), what="the orphan's end")

        def no_zombie() -> bool:
            return all(proc_state(pid) != "Z" for pid in descendants(ns.init_pid))

        wait_for(no_zombie, what="the orphan reaped while TERM is held")
        ns.signal(_signal.SIGTERM)
        assert ns.wait(timeout=RUN_DEADLINE) == 0


def test_child_exiting_during_the_delay_ends_it(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    argv = roost("--pre-stop-delay", "60", "--", "sh", "-c", f"touch {ready}; sleep 1; exit 7")
    with Namespace(argv, stderr=subprocess.PIPE) as ns:
        wait_for(ready.exists, what="child ready")
        sent = time.monotonic()
        ns.signal(_signal.SIGTERM)
        assert ns.wait(timeout=RUN_DEADLINE) == 7
        assert time.monotonic() - sent < 10
