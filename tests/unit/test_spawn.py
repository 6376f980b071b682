"""spawn(): a child it cannot follow, and which children posix_spawn starts."""

from __future__ import annotations

import errno
import os
import posix
import subprocess
import sys

import pytest

from roost.kernel import spawn as spawn_module
from roost.kernel.spawn import NEW_GROUP, Command, SpawnError, spawn

STDIO = {0: 0, 1: 1, 2: 2}


@pytest.mark.parametrize("fds", [{}, STDIO], ids=["fork", "posix_spawn"])
def test_a_child_roost_cannot_follow_is_killed_and_nothing_leaks(
        monkeypatch: pytest.MonkeyPatch, fds: dict[int, int]) -> None:
    # pidfd_open failing with EMFILE (the last descriptor went to the exec report pipe):
    # the child must not run on untracked, and the pipe must not stay open.
    def no_fd(pid: int) -> int:
        raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))

    started: list[int] = []
    real_fork, real_spawn = posix.fork, posix.posix_spawn

    def fork() -> int:
        pid = real_fork()
        if pid:
            started.append(pid)
        return pid

    def posix_spawn(*args: object, **kwargs: object) -> int:
        pid = real_spawn(*args, **kwargs)  # type: ignore[arg-type]
        started.append(pid)
        return pid

    before = sorted(os.listdir("/proc/self/fd"))
    monkeypatch.setattr(spawn_module.posix, "pidfd_open", no_fd)
    monkeypatch.setattr(spawn_module.posix, "fork", fork)
    monkeypatch.setattr(spawn_module.posix, "posix_spawn", posix_spawn)
    with pytest.raises(SpawnError, match="cannot follow the new process: Too many open files"):
        spawn(Command(["sleep", "600"], env={"PATH": "/usr/bin:/bin"}, fds=fds))
    monkeypatch.undo()
    assert sorted(os.listdir("/proc/self/fd")) == before
    (pid,) = started
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # killed and reaped already


def test_posix_spawn_only_for_a_child_owed_nothing_more() -> None:
    assert spawn_module._direct(Command(["true"], fds=STDIO))
    assert spawn_module._direct(Command(["true"], fds={**STDIO, 3: 3}, session=NEW_GROUP))
    for owed in ({"cwd": "/"}, {"umask": 0o22}, {"uid": 0}, {"pdeathsig": 9},
                 {"foreground_tty": 0}, {"env_pid_vars": ["LISTEN_PID"]}, {"nice": 1},
                 {"no_new_privs": True}, {"fds": {0: 0, 1: 1, 2: 5}}, {"fds": {0: 0}}):
        kwargs: dict[str, object] = {"fds": STDIO, **owed}
        assert not spawn_module._direct(Command(["true"], **kwargs)), owed  # type: ignore[arg-type]


def test_posix_spawn_child_gets_defaults_and_only_the_kept_descriptors() -> None:
    # What the fork path guarantees, the posix_spawn path must too: signals at their
    # defaults and unblocked, its own process group, and no descriptor roost inherited
    # without close-on-exec unless it was kept. Descriptors are told apart by inode: a
    # closed number is reused by the child's own listing.
    leaked_r, leaked_w = os.pipe()
    kept_r, kept_w = os.pipe()
    os.set_inheritable(leaked_r, True)
    os.set_inheritable(kept_r, True)
    leaked, kept = os.fstat(leaked_r).st_ino, os.fstat(kept_r).st_ino
    script = ("import os, signal\n"
              "inodes = set()\n"
              "for name in os.listdir('/proc/self/fd'):\n"
              "    try: inodes.add(os.fstat(int(name)).st_ino)\n"
              "    except OSError: pass\n"
              f"print({leaked} in inodes, {kept} in inodes)\n"
              "print(signal.getsignal(signal.SIGTERM) == signal.SIG_DFL,"
              " signal.getsignal(signal.SIGTTOU) == signal.SIG_DFL,"
              " sorted(signal.pthread_sigmask(signal.SIG_BLOCK, [])))\n"
              "print(os.getpgrp() == os.getpid())\n")
    probe = ("import os, signal, sys\n"
             "signal.signal(signal.SIGTTOU, signal.SIG_IGN)\n"
             "signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM])\n"
             "from roost.kernel import spawn\n"
             f"c = spawn.Command([sys.executable, '-c', {script!r}],"
             f" fds={{0: 0, 1: 1, 2: 2, {kept_r}: {kept_r}}}, session=spawn.NEW_GROUP)\n"
             "assert spawn._direct(c)\n"
             "os.waitpid(spawn.spawn(c).pid, 0)\n")
    try:
        out = subprocess.run([sys.executable, "-c", probe], check=True, timeout=60,
                             capture_output=True, text=True, pass_fds=(leaked_r, kept_r))
    finally:
        for fd in (leaked_r, leaked_w, kept_r, kept_w):
            os.close(fd)
    assert out.stdout.splitlines() == ["False True", "True True []", "True"], out
