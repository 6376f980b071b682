"""A console that stops reading never stops roost: it answers, reaps and shuts down, and
says how many lines the console missed once it reads again."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ns.supervisor_kit import ROOST, ConfigDir, both_modes
from tests.support import Namespace, require_unshare, started, unique_control, wait_for

pytestmark = pytest.mark.timeout(120)

CHATTY = """
import sys, time
n = 0
while True:
    for _ in range(200):
        print(f"chatty line {n:08d} " + "x" * 60)
        n += 1
    sys.stdout.flush()
    time.sleep(0.01)
"""


def drain(fd: int, until: bytes, timeout: float) -> bytes:
    """Read `fd` until `until` shows up (or EOF); fail after `timeout` seconds."""
    seen = b""
    deadline = time.monotonic() + timeout
    while until not in seen:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no {until!r} within {timeout}s; last {seen[-500:]!r}")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            data = os.read(fd, 1 << 20)
            if not data:
                break
            seen = seen[-(1 << 20):] + data
    return seen


@contextlib.contextmanager
def on_a_fifo(config: ConfigDir, mode: str
              ) -> Iterator[tuple[subprocess.Popen[bytes], int, int, str]]:
    """`roost up` with stdout and stderr on a FIFO read by nobody: (proc, pid, reader, control).

    The read end stays open, non-blocking, for the test to read when it chooses; roost
    is killed and the FIFO closed at the end.
    """
    fifo = config.path.parent / "console"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    writer = os.open(fifo, os.O_WRONLY)
    control = unique_control()
    argv = [*ROOST, "up", "-c", str(config.path), "--control", control]
    popen = {"stdout": writer, "stderr": writer, "stdin": subprocess.DEVNULL}
    with contextlib.ExitStack() as stack:
        stack.callback(os.close, reader)
        try:
            if mode == "pid1":
                require_unshare()
                ns = stack.enter_context(Namespace(argv, **popen))
                proc, pid = ns.proc, ns.init_pid
            else:
                proc = stack.enter_context(started(argv, **popen))
                pid = proc.pid
        finally:
            os.close(writer)
        yield proc, pid, reader, control


@both_modes
def test_a_console_that_stops_reading_does_not_stop_roost(tmp_path: Path, mode: str) -> None:
    config = ConfigDir(tmp_path / "conf")
    config.service("chatty", command=config.python("chatty", CHATTY))
    # Exits at once and is restarted: each exit must still be reaped.
    config.service("blip", command=["sh", "-c", "sleep 0.2"], restart="always",
                   restart_delay=0.1, restart_delay_max=0.1, restart_limit=1000)
    with on_a_fifo(config, mode) as (proc, pid, reader, control):
        from roost.control.client import Client

        def call(cmd: str, **args: object) -> object:
            with Client(control, timeout=5) as client:
                return client.call(cmd, **args)

        def ping() -> bool:
            from roost.control.client import NotRunning

            if proc.poll() is not None:
                raise AssertionError(f"roost exited {proc.returncode}")
            try:
                call("ping")
            except NotRunning:
                return False
            return True

        wait_for(ping, timeout=15, what="roost to answer")
        # The console is full, and stays so: roost goes on regardless.
        time.sleep(2)
        records = {r["name"]: r for r in call("status")}  # type: ignore[attr-defined]
        assert records["chatty"]["state"] == "up"
        first = records["blip"]["restarts"]
        wait_for(lambda: {r["name"]: r for r in call("status")}["blip"]["restarts"]  # type: ignore[attr-defined]
                 >= first + 3, timeout=15, what="blip reaped and restarted three times")
        status = subprocess.run([*ROOST, "status", "--control", control], capture_output=True,
                                text=True, timeout=10, stdin=subprocess.DEVNULL)
        # 3: blip, crash-looping, is not up (systemctl is-active's convention).
        assert status.returncode in (0, 3) and "chatty" in status.stdout, status
        # Reading again: what was held goes out, then one line says how much was not.
        seen = drain(reader, b"lines dropped (console could not keep up)\n", timeout=20)
        assert b"chatty | chatty line" in seen
        # TERM is acted on, with the console stalled again or not.
        started_at = time.monotonic()
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while proc.poll() is None and time.monotonic() < deadline:
            select.select([reader], [], [], 0.1)
            try:
                os.read(reader, 1 << 20)
            except BlockingIOError:
                pass
        assert proc.poll() is not None, "roost did not exit on TERM"
        print(f"roost exited {time.monotonic() - started_at:.2f}s after TERM")


@both_modes
def test_roost_exits_on_term_with_the_console_stalled(tmp_path: Path, mode: str) -> None:
    config = ConfigDir(tmp_path / "conf")
    config.service("chatty", command=config.python("chatty", CHATTY))
    with on_a_fifo(config, mode) as (proc, pid, _reader, _control):
        time.sleep(2)  # the console fills, and nobody reads it again
        os.kill(pid, signal.SIGTERM)
        # Gone within the deadline, though its last words cannot reach the console.
        proc.wait(timeout=20)
