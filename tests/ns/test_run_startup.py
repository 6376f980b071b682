"""`roost run` start-up: signals sent while it starts, and what it imports.

A signal to PID 1 with no handler is discarded by the kernel, so a TERM that reaches
roost before its first module (roost.early) has blocked signals is lost; one that
arrives after is kept pending and forwarded. The test asserts the part that must hold:
once roost has provably blocked signals (SigBlk in /proc/PID/status non-zero, in the
roost process itself), no TERM is lost. How long the window before that is, and which
fixed delays after exec fall inside it, is measured, not asserted:

    .venv/bin/python -m tests.ns.test_run_startup [TRIALS [LAUNCHER...]]

LAUNCHER (the argv that starts roost) defaults to the one the tests use.
"""

from __future__ import annotations

import _signal
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests import support
from tests.support import PYTHON, ROOST, Namespace


def _sigblk(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("SigBlk:"):
                    return int(line.split()[1], 16)
    except OSError:
        pass
    return 0


def _runs_python(pid: int) -> bool:
    """Whether the interpreter the launcher runs roost with is the image of `pid` now."""
    try:
        return os.readlink(f"/proc/{pid}/exe") == os.path.realpath(_launcher_argv()[0])
    except OSError:
        return False


def test_term_after_roost_blocked_signals_is_never_lost() -> None:
    support.require_unshare()
    lost = []
    for trial in range(40):
        with Namespace([*ROOST, "run", "--", "sleep", "30"]) as ns:
            pid = ns.init_pid
            deadline = time.monotonic() + 10
            # Busy-wait: the earlier the signal after the block, the stronger the check.
            # roost's mask is never empty again once roost.early ran (SIGPIPE stays
            # blocked), and the interpreter blocks nothing before it. unshare's child
            # briefly has INT and TERM blocked before its exec: hence the exe is read
            # first, so the mask read after it is the new image's.
            while not (_runs_python(pid) and _sigblk(pid)):
                if time.monotonic() > deadline:
                    raise AssertionError("roost never blocked SIGTERM")
            ns.signal(_signal.SIGTERM)
            code = ns.wait(timeout=10)
            if code != 143:
                lost.append((trial, code))
    assert not lost, f"TERM lost after roost had blocked it (trial, status): {lost}"


# PID 1 before roost: block every signal, say so on stdout, exec argv[1:].
_BLOCK_THEN_EXEC = r"""
import os, signal, sys
signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
os.write(1, b"blocked\n")
os.execv(sys.argv[1], sys.argv[1:])
"""


def test_term_is_never_lost_when_the_runtime_starts_roost_blocked() -> None:
    # A blocked signal stays pending across execve and roost keeps it blocked until its
    # handlers are in place: with signals blocked by whoever execs roost, no window is left.
    support.require_unshare()
    lost = []
    for trial in range(20):
        argv = [PYTHON, "-c", _BLOCK_THEN_EXEC, *ROOST, "run", "--", "sleep", "30"]
        with Namespace(argv, stdout=subprocess.PIPE) as ns:
            assert ns.proc.stdout is not None
            assert ns.proc.stdout.readline() == b"blocked\n"
            ns.signal(_signal.SIGTERM)
            code = ns.wait(timeout=10)
            if code != 143:
                lost.append((trial, code))
    assert not lost, lost


# `__future__` too: `from __future__ import annotations` imports a module, about 90 µs
# of every container start; the container path writes its annotations as strings instead.
# `os` with `_collections_abc` costs 1.3 ms: the path calls posix itself.
FORBIDDEN = ("enum", "typing", "re", "argparse", "json", "socket", "ctypes", "logging",
             "dataclasses", "asyncio", "selectors", "__future__", "os", "site")


def _launcher_argv() -> list[str]:
    """What roost's launcher runs, under `-X importtime`: roost-python by its interpreter."""
    if len(ROOST) == 1:
        script = Path(ROOST[0]).with_name("roost-python")
        interpreter = script.read_text().splitlines()[0].removeprefix("#!")
        return [interpreter, "-I", "-S", "-X", "importtime", str(script)]
    return [ROOST[0], "-X", "importtime", *ROOST[1:]]


def test_pid1_imports_nothing_heavy() -> None:
    support.require_unshare()
    with Namespace([*_launcher_argv(), "run", "--", "true"], stderr=subprocess.PIPE) as ns:
        _, err = ns.proc.communicate(timeout=20)
    assert ns.proc.returncode == 0, err
    imported = {line.rsplit("|", 1)[1].strip() for line in err.decode().splitlines()
                if line.startswith("import time:") and "|" in line}
    # The observation is real: it names roost's own modules on this path.
    assert {"roost.early", "roost.container.run", "roost.container.init",
            "roost.container.options", "roost.kernel.loop", "roost.kernel.reaper",
            "roost.kernel.spawn"} <= imported
    heavy = sorted(m for m in imported if m.split(".")[0] in FORBIDDEN)
    assert not heavy, f"roost run as PID 1 imported {heavy}"
    assert "roost.kernel.ready" not in imported  # only with --ready-file or --ready-fd


def test_ready_options_import_nothing_heavy(tmp_path: Path) -> None:
    support.require_unshare()
    read_end, write_end = os.pipe()
    argv = [*_launcher_argv(), "run", "--ready-file", str(tmp_path / "ready"),
            "--ready-fd", str(write_end), "--", "true"]
    try:
        with Namespace(argv, stderr=subprocess.PIPE, pass_fds=(write_end,)) as ns:
            os.close(write_end)
            _, err = ns.proc.communicate(timeout=20)
        assert ns.proc.returncode == 0, err
        assert os.read(read_end, 10) == b"\n"
    finally:
        os.close(read_end)
    imported = {line.rsplit("|", 1)[1].strip() for line in err.decode().splitlines()
                if line.startswith("import time:") and "|" in line}
    assert "roost.kernel.ready" in imported
    # The ready file's path checks are os.path's: os is paid by those who ask for one.
    heavy = sorted(m for m in imported if m.split(".")[0] in FORBIDDEN and m != "os")
    assert not heavy, f"roost run with the ready options imported {heavy}"
    assert not (tmp_path / "ready").exists()


def test_new_options_import_nothing_heavy() -> None:
    # Restarts, the drain and no-new-privileges are built from what the plain path loads.
    support.require_unshare()
    argv = [*_launcher_argv(), "run", "--restart", "always", "--restart-limit", "0",
            "--pre-stop-delay", "1", "--no-new-privileges", "--", "true"]
    with Namespace(argv, stderr=subprocess.PIPE) as ns:
        _, err = ns.proc.communicate(timeout=20)
    assert ns.proc.returncode == 0, err
    imported = {line.rsplit("|", 1)[1].strip() for line in err.decode().splitlines()
                if line.startswith("import time:") and "|" in line}
    assert "roost.container.init" in imported
    heavy = sorted(m for m in imported if m.split(".")[0] in FORBIDDEN)
    assert not heavy, f"roost run with the restart options imported {heavy}"


def test_not_pid1_imports_nothing_heavy_either() -> None:
    # The subreaper prctl goes through the _ctypes C module, not the ctypes package.
    ran = subprocess.run([*_launcher_argv(), "run", "--", "true"], capture_output=True,
                         timeout=20, check=False)
    assert ran.returncode == 0, ran
    imported = {line.rsplit("|", 1)[1].strip() for line in ran.stderr.decode().splitlines()
                if line.startswith("import time:") and "|" in line}
    heavy = sorted(m for m in imported if m.split(".")[0] in FORBIDDEN)
    assert heavy == [], heavy
    assert "_ctypes" in imported  # the prctl really ran, through the C module
    assert "roost.kernel.linux" not in imported  # PID 1's machine-wide calls are not loaded


# -- measurement (not a test) ---------------------------------------------------------------

# PID 1 before roost: open the FIFO argv[1] close-on-exec, write one byte, exec argv[2:].
# The reader sees the byte, then end-of-file at the instant the exec replaces this image.
_EXEC_MARK = r"""
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CLOEXEC)
os.write(fd, b"x")
os.execv(sys.argv[2], sys.argv[2:])
"""


def _start(fifo: str, child: list[str], launcher: list[str]) -> tuple[Namespace, int]:
    ns = Namespace([PYTHON, "-c", _EXEC_MARK, fifo, *launcher, "run", "--", *child])
    pid = ns.init_pid
    fd = os.open(fifo, os.O_RDONLY)
    try:
        if os.read(fd, 1) != b"x" or os.read(fd, 1) != b"":
            raise AssertionError("exec mark not seen")
    finally:
        os.close(fd)
    return ns, pid


def measure_window(fifo: str, trials: int, launcher: list[str]) -> list[float]:
    """Milliseconds from roost's exec until /proc shows its signals blocked."""
    found = []
    for _ in range(trials):
        ns, pid = _start(fifo, ["true"], launcher)
        with ns:
            t0 = time.monotonic()
            deadline = t0 + 10
            while not _sigblk(pid):
                if time.monotonic() > deadline:
                    raise AssertionError("never blocked")
            found.append((time.monotonic() - t0) * 1000)
            ns.wait(timeout=10)
    return found


def measure_loss(fifo: str, delay_ms: float, trials: int, launcher: list[str]) -> int:
    """How many of `trials` TERMs sent `delay_ms` after roost's exec were lost."""
    lost = 0
    for _ in range(trials):
        ns, pid = _start(fifo, ["sleep", "0.5"], launcher)
        with ns:
            if delay_ms:
                time.sleep(delay_ms / 1000)
            os.kill(pid, _signal.SIGTERM)
            code = ns.wait(timeout=10)
            if code == 0:
                lost += 1
            elif code != 143:
                raise AssertionError(f"unexpected status {code}")
    return lost


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    trials = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    launcher = sys.argv[2:] or ROOST
    print(f"launcher: {' '.join(launcher)}; load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        fifo = str(Path(tmp) / "exec-mark")
        os.mkfifo(fifo)
        window = measure_window(fifo, trials, launcher)
        print(f"exec -> signals blocked, {trials} trials: min {min(window):.1f} ms, "
              f"median {_percentile(window, 0.5):.1f} ms, p90 {_percentile(window, 0.9):.1f} ms,"
              f" max {max(window):.1f} ms", flush=True)
        for delay in (0, 1, 5, 10, 20, 100):
            lost = measure_loss(fifo, delay, trials, launcher)
            print(f"TERM {delay:>3} ms after exec: {lost}/{trials} lost", flush=True)


if __name__ == "__main__":
    if os.geteuid() != 0:
        pytest.exit("needs root for PID namespaces")
    main()
