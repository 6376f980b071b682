"""Shared test tools: start roost for real, in namespaces, with deadlines and cleanup."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
_launcher = Path(sys.executable).parent / "roost"
# The installed launcher when the tests run from the venv; else the module.
ROOST: list[str] = [str(_launcher)] if _launcher.exists() else [sys.executable, "-m", "roost"]
PYTHON = sys.executable


def have_root() -> bool:
    return os.geteuid() == 0


def require_unshare() -> None:
    """Skip loudly when PID namespaces cannot be made here."""
    import pytest

    if not have_root() or shutil.which("unshare") is None:
        pytest.skip("SKIPPED: needs root and util-linux unshare to make PID namespaces")


def unique_control() -> str:
    """A fresh abstract socket name (abstract names are shared by the whole network namespace)."""
    return f"@roost-test-{uuid.uuid4().hex[:12]}"


def wait_for(predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.01,
             what: str = "condition") -> object:
    """Poll `predicate` until it returns something truthy; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def children_of(pid: int) -> list[int]:
    """PIDs whose parent is `pid`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        fields = data[data.rindex(b")") + 2 :].split()
        if int(fields[1]) == pid:
            found.append(int(entry))
    return found


def proc_state(pid: int) -> str | None:
    """The one-letter state of a process, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    return data[data.rindex(b")") + 2 :].split()[0].decode()


def voluntary_switches(pid: int) -> int:
    """How often `pid` has gone to sleep: each wake-up of an idle process is one more."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("voluntary_ctxt_switches:"):
                return int(line.split()[1])
    raise AssertionError("no voluntary_ctxt_switches")


def descendants(pid: int) -> list[int]:
    """Every process below `pid` in the process tree."""
    out: list[int] = []
    queue = [pid]
    while queue:
        for child in children_of(queue.pop()):
            out.append(child)
            queue.append(child)
    return out


class Namespace:
    """A command run as PID 1 of fresh PID (and mount, UTS) namespaces, torn down for sure."""

    def __init__(self, argv: Sequence[str], *, uts: bool = False, extra_unshare: Sequence[str] = (),
                 **popen: object):
        flags = ["--pid", "--fork", "--mount-proc", "--kill-child"]
        if uts:
            flags.append("--uts")
        self.argv = ["unshare", *flags, *extra_unshare, *argv]
        popen.setdefault("start_new_session", True)
        self.proc = subprocess.Popen(self.argv, **popen)  # type: ignore[call-overload]
        self._init_pid: int | None = None

    @property
    def init_pid(self) -> int:
        """The host PID of the namespace's PID 1 (the child of unshare)."""
        if self._init_pid is None:
            found = wait_for(lambda: children_of(self.proc.pid), timeout=10,
                             what="the namespace's PID 1")
            self._init_pid = found[0]  # type: ignore[index]
        return self._init_pid

    def signal(self, signum: int) -> None:
        """Send a signal to PID 1 from outside, as a container runtime does."""
        os.kill(self.init_pid, signum)

    def wait(self, timeout: float = 30.0) -> int:
        """Wait for unshare (and so PID 1) to exit; its status mirrors PID 1's."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"namespace did not exit within {timeout}s: {self.argv}") from None

    def kill(self) -> None:
        """SIGKILL PID 1 (the kernel then kills the whole namespace) and reap unshare."""
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                if self._init_pid is not None:
                    os.kill(self._init_pid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)

    def __enter__(self) -> Namespace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


@contextlib.contextmanager
def started(argv: Sequence[str], **popen: object) -> Iterator[subprocess.Popen[bytes]]:
    """A plain process in its own session, killed with its group on exit."""
    popen.setdefault("start_new_session", True)
    proc = subprocess.Popen(argv, **popen)  # type: ignore[call-overload]
    try:
        yield proc
    finally:
        for pid in reversed(descendants(proc.pid)):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        if proc.poll() is None:
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)


class Ran:
    """How one roost run ended."""

    def __init__(self, rc: int, out: str, err: str, elapsed: float):
        self.rc = rc
        self.out = out
        self.err = err
        self.elapsed = elapsed

    def __repr__(self) -> str:
        return f"Ran(rc={self.rc}, elapsed={self.elapsed:.2f}, out={self.out!r}, err={self.err!r})"


def run_ns(argv: Sequence[str], timeout: float = 20.0, **popen: object) -> Ran:
    """Run `argv` as PID 1 of a new namespace to completion, with a deadline."""
    start = time.monotonic()
    with Namespace(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen) as ns:
        try:
            out, err = ns.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            ns.kill()
            raise AssertionError(f"no exit within {timeout}s: {argv}") from None
        return Ran(ns.proc.returncode, out.decode(), err.decode(), time.monotonic() - start)
