"""Processes the bench starts, and what it reads about them from /proc.

Every process goes through `Owned`, which kills and reaps it at the end even when
a scenario fails.  Supervisors run as PID 2 of a PID namespace of their own, held
by `nsinit` (bench/native/nsinit.c): killing the holder tears the whole namespace
down, services and forked-away daemons included, so nothing can leak.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO, Any

from bench.core import BIN

UNSHARE = ["unshare", "--pid", "--fork", "--kill-child", "--mount-proc"]


class Owned:
    """Every process a scenario starts; `close` kills and reaps them all."""

    def __init__(self) -> None:
        self._procs: list[subprocess.Popen[bytes]] = []
        self._ns: list[NsRun] = []

    def popen(
        self,
        argv: Sequence[str | os.PathLike[str]],
        *,
        stdout: int | IO[Any] | None = subprocess.DEVNULL,
        stderr: int | IO[Any] | None = subprocess.DEVNULL,
        pass_fds: Sequence[int] = (),
        env: dict[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start argv in a session (and process group) of its own."""
        p = subprocess.Popen(
            [str(a) for a in argv],
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            pass_fds=tuple(pass_fds),
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
        self._procs.append(p)
        return p

    def ns(self, argv: Sequence[str | os.PathLike[str]], log: Path, **kw: Any) -> NsRun:
        """Run argv as PID 2 of a fresh PID namespace (PID 1 is nsinit)."""
        run = NsRun(self, argv, log, **kw)
        self._ns.append(run)
        return run

    def run(
        self, argv: Sequence[str | os.PathLike[str]], timeout: float, **kw: Any
    ) -> subprocess.CompletedProcess[bytes]:
        """Run argv to completion within `timeout` seconds, output captured."""
        p = self.popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_group(p)
            out, err = p.communicate()
            raise
        return subprocess.CompletedProcess(p.args, p.returncode, out, err)

    def close(self) -> None:
        """SIGKILL every process group still alive, reap, and wait for namespaces to empty."""
        for p in reversed(self._procs):
            if p.poll() is None:
                kill_group(p)
        for p in reversed(self._procs):
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                print(f"bench: pid {p.pid} survived SIGKILL for 10 s")
        for run in self._ns:
            run.wait_gone(10)
        self._procs.clear()
        self._ns.clear()

    def __enter__(self) -> Owned:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def kill_group(p: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process group a process leads (it was started in its own session)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(p.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        p.kill()


class NsRun:
    """A command under nsinit in a new PID namespace, with nsinit's timestamped events."""

    def __init__(
        self,
        owned: Owned,
        argv: Sequence[str | os.PathLike[str]],
        log: Path,
        cwd: str | os.PathLike[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        r, w = os.pipe()
        self._events: dict[str, list[float]] = {}
        self._cond = threading.Condition()
        self._logf = open(log, "ab")  # noqa: SIM115 - closed by the reader thread
        try:
            self.proc = owned.popen(
                [*UNSHARE, BIN / "nsinit", "-f", str(w), "--", *argv],
                stdout=self._logf,
                stderr=subprocess.STDOUT,
                pass_fds=(w,),
                cwd=cwd,
                env=env,
            )
        finally:
            os.close(w)
        self._reader = threading.Thread(target=self._read, args=(r,), daemon=True)
        self._reader.start()
        self._init_pid: int | None = None
        self._init_fd: int | None = None

    def _read(self, fd: int) -> None:
        buf = b""
        with os.fdopen(fd, "rb", buffering=0) as f:
            while True:
                chunk = f.read(4096)
                if not chunk:
                    break
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    parts = line.decode().split()
                    if len(parts) >= 2:
                        with self._cond:
                            self._events.setdefault(parts[0], []).append(int(parts[1]) / 1e9)
                            if parts[0] == "exit" and len(parts) > 2:
                                self._events.setdefault("status", []).append(float(parts[2]))
                            self._cond.notify_all()
        with self._cond:
            self._events.setdefault("eof", []).append(time.monotonic())
            self._cond.notify_all()
        self._logf.close()

    def event(self, name: str, timeout: float) -> float:
        """The monotonic time (s) of nsinit's event `name`; waits up to `timeout` for it."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while name not in self._events:
                left = deadline - time.monotonic()
                if left <= 0 or ("eof" in self._events and name != "eof"):
                    raise TimeoutError(f"no '{name}' event from nsinit")
                self._cond.wait(left)
            return self._events[name][0]

    def has(self, name: str) -> bool:
        """Whether nsinit reported `name` already."""
        with self._cond:
            return name in self._events

    @property
    def init_pid(self) -> int:
        """Host PID of nsinit (PID 1 of the namespace)."""
        if self._init_pid is None:
            kids = wait_children(self.proc.pid, 1, 5.0)
            self._init_pid = kids[0]
            with contextlib.suppress(OSError):
                self._init_fd = os.pidfd_open(self._init_pid)
        return self._init_pid

    @property
    def main_pid(self) -> int:
        """Host PID of the command (PID 2 of the namespace)."""
        return wait_children(self.init_pid, 1, 5.0)[0]

    def pids(self) -> list[int]:
        """Host PIDs of every process of the namespace except nsinit."""
        return descendants(self.init_pid)

    def wait_gone(self, timeout: float) -> bool:
        """Wait until nsinit, and with it the namespace, is gone."""
        if self._init_pid is None:
            kids = children(self.proc.pid)
            if not kids:
                return True
            self._init_pid = kids[0]
            with contextlib.suppress(OSError):
                self._init_fd = os.pidfd_open(self._init_pid)
        if self._init_fd is None:
            return not Path(f"/proc/{self._init_pid}").exists()
        try:
            ready, _, _ = select.select([self._init_fd], [], [], timeout)
            return bool(ready)
        finally:
            os.close(self._init_fd)
            self._init_fd = None


def children(pid: int) -> list[int]:
    """Direct children of pid, over all its threads (empty if it is gone)."""
    out: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out.extend(int(x) for x in f.read().split())
        except OSError:
            pass
    return out


def wait_children(pid: int, count: int, timeout: float) -> list[int]:
    """Poll until pid has at least `count` children; return them."""
    deadline = time.monotonic() + timeout
    while True:
        kids = children(pid)
        if len(kids) >= count:
            return kids
        if time.monotonic() > deadline:
            raise TimeoutError(f"pid {pid} has {len(kids)} children, expected {count}")
        time.sleep(0.001)


def descendants(pid: int) -> list[int]:
    """Every descendant of pid (not pid itself), breadth first."""
    out: list[int] = []
    todo = [pid]
    while todo:
        kids = children(todo.pop())
        out.extend(kids)
        todo.extend(kids)
    return out


def exe(pid: int) -> str:
    """The resolved executable of pid, or '' when unreadable."""
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return ""


def comm(pid: int) -> str:
    """The command name of pid, or ''."""
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def rss_pss(pids: Iterable[int]) -> tuple[int, int]:
    """Summed Rss and Pss of the given processes in bytes (smaps_rollup)."""
    rss = pss = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Rss:"):
                        rss += int(line.split()[1]) * 1024
                    elif line.startswith("Pss:"):
                        pss += int(line.split()[1]) * 1024
        except OSError:
            pass
    return rss, pss


def ctx_switches(pids: Iterable[int]) -> int:
    """Voluntary plus involuntary context switches of the processes, over all threads."""
    total = 0
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/status") as f:
                    for line in f:
                        if line.startswith(("voluntary_ctxt", "nonvoluntary_ctxt")):
                            total += int(line.split()[1])
            except OSError:
                pass
    return total


def wait_pid_exit(pid: int, timeout: float) -> float | None:
    """Wait (via a pidfd) for a process that is not our child to end; its end time, or None."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return time.monotonic()
    try:
        ready, _, _ = select.select([fd], [], [], timeout)
        return time.monotonic() if ready else None
    finally:
        os.close(fd)
