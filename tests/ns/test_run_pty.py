"""`roost run` on a terminal, as `docker run -it` gives it: job control, ^C, ^Z, never stopped.

A pty from os.openpty is the controlling terminal of roost's session: `setsid -c` makes
the namespace's PID 1 a session leader and takes the pty as its controlling terminal
before it execs roost. unshare itself starts in a new session without opening the pty,
so it never owns it. Every test samples roost's state in /proc while it waits, and
fails if roost was ever seen stopped.
"""

from __future__ import annotations

import os
import select
import termios
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from tests import support
from tests.support import ROOST, Namespace, descendants, proc_state, wait_for

pytestmark = pytest.mark.usefixtures("unshare_required")



def _stat_fields(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat", "rb") as f:
        data = f.read()
    return data[data.rindex(b")") + 2 :].decode().split()


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


class Terminal:
    """A command run as PID 1 of a namespace on a fresh pty; read with deadlines."""

    def __init__(self, argv: Sequence[str], tmp: Path, tostop: bool = False):
        master, slave = os.openpty()
        if tostop:
            # A background write to the terminal then raises SIGTTOU: roost must not stop.
            attrs = termios.tcgetattr(slave)
            attrs[3] |= termios.TOSTOP
            termios.tcsetattr(slave, termios.TCSANOW, attrs)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TERM": "dumb",
               "HOME": str(tmp), "PS1": "roost-test$ ", "LC_ALL": "C"}
        env.update((k, v) for k, v in os.environ.items() if k.startswith("PYTHON"))
        self.master = master
        self.ns = Namespace(argv, stdin=slave, stdout=slave, stderr=slave, env=env)
        os.close(slave)
        self.seen = b""
        self._pending = b""
        self.roost_states: set[str] = set()
        self.roost: int | None = None

    def sample(self) -> None:
        """Record the state of the roost process (when it is known)."""
        if self.roost is not None:
            state = proc_state(self.roost)
            if state is not None:
                self.roost_states.add(state)

    def expect(self, pattern: bytes, timeout: float = 10.0) -> bytes:
        """Read until `pattern` appears; return everything up to and including it."""
        deadline = time.monotonic() + timeout
        while pattern not in self._pending:
            self.sample()
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {pattern!r} within {timeout}s; got {self._pending!r}")
            ready, _, _ = select.select([self.master], [], [], min(left, 0.02))
            if ready:
                try:
                    data = os.read(self.master, 4096)
                except OSError:  # EIO: every slave fd is closed
                    data = b""
                if not data:
                    raise AssertionError(f"terminal closed before {pattern!r}: {self._pending!r}")
                self._pending += data
                self.seen += data
        end = self._pending.index(pattern) + len(pattern)
        head, self._pending = self._pending[:end], self._pending[end:]
        return head

    def drain(self) -> None:
        """Read whatever is left until the terminal closes (bounded)."""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if not ready:
                if self.ns.proc.poll() is not None:
                    return
                continue
            try:
                data = os.read(self.master, 4096)
            except OSError:
                return
            if not data:
                return
            self.seen += data

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    def wait_sampling(self, predicate: object, what: str, timeout: float = 10.0) -> None:
        """wait_for, sampling roost's state on every poll."""
        def probe() -> object:
            self.sample()
            return predicate()  # type: ignore[operator]
        wait_for(probe, timeout=timeout, what=what)

    def finish(self, timeout: float = 15.0) -> int:
        deadline = time.monotonic() + timeout
        while self.ns.proc.poll() is None:
            self.sample()
            if time.monotonic() > deadline:
                raise AssertionError(f"no exit within {timeout}s; output {self.seen!r}")
            self.drain()
        return self.ns.proc.returncode

    def close(self) -> None:
        self.ns.kill()
        os.close(self.master)

    def __enter__(self) -> Terminal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _find(root: int, comm: str) -> int | None:
    for pid in descendants(root):
        if _comm(pid) == comm:
            return pid
    return None


def _assert_roost_owns_the_terminal(term: Terminal) -> int:
    """roost is PID 1, its own session's leader, with the pty as controlling terminal."""
    init = term.ns.init_pid
    wait_for(lambda: _comm(init) == "roost" or "python" in _comm(init), what="roost's exec")
    fields = _stat_fields(init)
    assert int(fields[3]) == init, "roost should lead its session"
    assert int(fields[4]) != 0, "roost should have a controlling terminal"
    term.roost = init
    return init


def test_interactive_shell_has_job_control(tmp_path: Path) -> None:
    argv = ["setsid", "-c", *ROOST, "run", "--", "bash", "--norc", "--noprofile", "-i"]
    with Terminal(argv, tmp_path) as term:
        init = _assert_roost_owns_the_terminal(term)
        term.expect(b"roost-test$ ")
        term.send(b"echo flags=$-\n")
        flags = term.expect(b"roost-test$ ").split(b"flags=")[-1].split()[0]
        assert b"m" in flags, term.seen

        term.send(b"sleep 30\n")
        term.wait_sampling(lambda: _find(init, "sleep"), what="sleep running")
        sleeper = _find(init, "sleep")
        assert sleeper is not None
        term.send(b"\x1a")  # ^Z
        term.expect(b"Stopped")
        term.expect(b"roost-test$ ")
        assert proc_state(sleeper) == "T"

        term.send(b"fg\n")
        term.wait_sampling(lambda: proc_state(sleeper) == "S", what="sleep resumed")
        term.send(b"\x03")  # ^C
        term.expect(b"roost-test$ ")
        term.wait_sampling(lambda: proc_state(sleeper) is None, what="sleep gone")

        term.send(b"exit 7\n")
        assert term.finish() == 7
    assert b"no job control" not in term.seen, term.seen
    assert b"cannot set terminal process group" not in term.seen, term.seen
    assert "T" not in term.roost_states, term.roost_states


def test_ctrl_c_reaches_a_bare_command(tmp_path: Path) -> None:
    argv = ["setsid", "-c", *ROOST, "run", "-v", "--", "sleep", "30"]
    with Terminal(argv, tmp_path, tostop=True) as term:
        init = _assert_roost_owns_the_terminal(term)
        term.wait_sampling(lambda: _find(init, "sleep"), what="sleep running")
        term.send(b"\x03")
        assert term.finish() == 130
    assert b"killed by SIGINT" in term.seen, term.seen
    assert "T" not in term.roost_states, term.roost_states


@pytest.mark.parametrize("shell", ["job-control", "script"])
def test_not_session_leader_hands_the_terminal_over_and_back(tmp_path: Path, shell: str) -> None:
    # A shell leads the session and roost (PID 2) runs in its foreground; the terminal
    # has TOSTOP set. roost gives the terminal to its child, and when the child is gone
    # takes it back from the background and logs: SIGTTOU is ignored, so roost is not
    # stopped, and the shell that ran it can write to the terminal again.
    # job-control: bash -m gives roost a process group of its own (not orphaned, so a
    # SIGTTOU at its default would stop it); roost starts with TTIN/TTOU at their defaults.
    # script: sh without job control; roost shares its group, so without roost taking the
    # terminal back, sh's own echo would fail.
    roost = " ".join(ROOST)
    line = f'{roost} run -v -- sleep 30; echo "rc=$?"'
    if shell == "job-control":
        argv = ["setsid", "-c", "bash", "--norc", "--noprofile", "-c",
                f"set -m; env --default-signal=TTIN,TTOU {line}"]
    else:
        argv = ["setsid", "-c", "sh", "-c", line]
    with Terminal(argv, tmp_path, tostop=True) as term:
        init = term.ns.init_pid
        term.wait_sampling(lambda: _find(init, "sleep"), what="sleep running")
        term.roost = next(p for p in support.children_of(init))
        term.send(b"\x03")
        term.expect(b"rc=130")
        assert term.finish() == 0
    assert b"killed by SIGINT" in term.seen, term.seen
    assert "T" not in term.roost_states, term.roost_states
