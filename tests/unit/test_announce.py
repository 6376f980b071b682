"""roost's own readiness on a fake edge: when the first settle comes, what the file says.

The supervisor runs on tests/unit/test_supervisor.py's fakes; the announcer's outward
side is real: a datagram socket of the test's own, a pipe, a file in a private directory.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from roost.kernel.ready import ReadyFile
from roost.supervise.announce import Announcer
from tests.unit.test_supervisor import World, service


def listener(tmp_path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.setblocking(False)
    return sock


def datagrams(sock: socket.socket) -> list[str]:
    got = []
    while True:
        try:
            got.append(sock.recv(4096).decode())
        except BlockingIOError:
            return got


def test_first_settle_waits_out_a_backoff_and_counts_a_clean_exit(tmp_path: Path) -> None:
    w = World([service("job", restart="never"),
               service("api", restart_delay=0.01, restart_delay_max=0.01),
               service("once", type="oneshot")])
    try:
        settle(w, tmp_path)
    finally:
        w.close()


def settle(w: World, tmp_path: Path) -> None:
    sock = listener(tmp_path)
    read_end, write_end = os.pipe()
    (tmp_path / "run").mkdir(mode=0o755)
    path = tmp_path / "run" / "ready"
    path.write_text("stale")
    file = ReadyFile(str(path))
    assert not path.exists(), "a stale file from an earlier run stays"
    announcer = Announcer(w.supervisor, notify=str(tmp_path / "notify"), ready_fd=write_end,
                          ready_file=file)
    w.supervisor.start_all()
    announcer.begin()
    w.exec_ok("job")
    w.exec_ok("api")
    w.child("once").exec_succeeded()
    w.exit("once", 0)
    w.exit("job", 0)  # done with what it was asked: down and no longer wanted
    w.exit("api", 3)  # backing off: on its way, so not settled yet
    w.turn()
    assert w.states() == {"job": "down", "api": "backoff", "once": "done"}
    assert not announcer.settled and datagrams(sock) == [] and not path.exists()
    w.turn(lambda: w.state("api") == "starting")
    w.exec_ok("api")
    w.turn(lambda: announcer.settled)
    assert datagrams(sock) == ["READY=1\nSTATUS=1 up, 1 done, 1 down"]
    assert os.read(read_end, 10) == b"\n" and os.read(read_end, 10) == b"", "fd not closed"
    assert path.read_text() == "1 up, 1 done, 1 down\n"
    # A crash of a wanted service: the file goes, the status says so; then it is back.
    w.exit("api", 3)
    w.turn()
    assert not path.exists()
    assert datagrams(sock) == ["STATUS=1 done, 1 backoff, 1 down"]
    w.turn(lambda: w.state("api") == "starting")
    w.exec_ok("api")
    w.turn(lambda: path.exists())
    announcer.stop()
    assert not path.exists()
    assert datagrams(sock)[-1] == "STOPPING=1\nSTATUS=stopping"
    announcer.close()
    os.close(read_end)
    sock.close()


def test_no_announcer_no_hook() -> None:
    w = World([service("a")])
    try:
        w.supervisor.start_all()
        w.exec_ok("a")
        assert w.supervisor.on_change is None
    finally:
        w.close()
