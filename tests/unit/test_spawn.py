"""spawn() when the descriptor it follows a child with cannot be had."""

from __future__ import annotations

import errno
import os

import pytest

from roost.kernel import spawn as spawn_module
from roost.kernel.spawn import Command, SpawnError, spawn


def test_a_child_roost_cannot_follow_is_killed_and_nothing_leaks(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # pidfd_open failing with EMFILE (the last descriptor went to the exec report pipe):
    # the child must not run on untracked, and the pipe must not stay open.
    def no_fd(pid: int) -> int:
        raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))

    forked: list[int] = []
    real_fork = os.fork

    def fork() -> int:
        pid = real_fork()
        if pid:
            forked.append(pid)
        return pid

    before = sorted(os.listdir("/proc/self/fd"))
    monkeypatch.setattr(spawn_module.os, "pidfd_open", no_fd)
    monkeypatch.setattr(spawn_module.os, "fork", fork)
    with pytest.raises(SpawnError, match="cannot follow the new process: Too many open files"):
        spawn(Command(["sleep", "600"], env={"PATH": "/usr/bin:/bin"}))
    monkeypatch.undo()
    assert sorted(os.listdir("/proc/self/fd")) == before
    (pid,) = forked
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # killed and reaped already
