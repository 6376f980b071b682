"""FDSTORE=1: descriptors a notify service leaves with roost outlive its restarts.

A real service stores its listening socket with FDSTORE=1 and FDNAME=, is killed, and
gets the same socket back at its next start as sd_listen_fds(3) reads it (LISTEN_FDS,
LISTEN_PID, LISTEN_FDNAMES from fd 3): a client that connects while it is down waits in
the socket's backlog and is served by the next run. A stop closes what it stored.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.ns.supervisor_kit import ConfigDir, Roost, both_modes, running
from tests.support import wait_for

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("unshare_required")]

SERVICE = r"""
import array, os, socket, sys
events, path = sys.argv[1], sys.argv[2]
address = os.environ["NOTIFY_SOCKET"]
address = "\0" + address[1:] if address.startswith("@") else address
notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
def say(text, fds=()):
    rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
    notify.sendmsg([text.encode()], rights, 0, address)
def note(text):
    with open(events, "a") as f:
        f.write(text + "\n")
if os.environ.get("LISTEN_PID") == str(os.getpid()):
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, fileno=3)
    note(f"handed {os.environ['LISTEN_FDS']} {os.environ['LISTEN_FDNAMES']}")
else:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    if os.path.exists(path):
        os.unlink(path)  # a run before, stopped: its socket is closed, its name left
    server.bind(path)
    server.listen(16)
    note("made")
    # Two copies, one more than fd_store_max: one is kept, one closed and said so.
    say("FDSTORE=1\nFDNAME=http", [server.fileno(), os.dup(server.fileno())])
say("READY=1")
while True:
    conn, _ = server.accept()
    conn.sendall(f"{os.getpid()}\n".encode())
    conn.close()
"""


def ask(path: Path) -> socket.socket:
    """Connect (the backlog takes it even while nobody accepts); read the answer later."""
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.settimeout(30)
    client.connect(str(path))
    return client


def answer(client: socket.socket) -> int:
    with client:
        return int(client.makefile().readline())


@both_modes
def test_a_stored_socket_outlives_a_crash_and_a_stop_closes_it(tmp_path: Path,
                                                               mode: str) -> None:
    events = tmp_path / "events"
    path = tmp_path / "http.sock"
    config = ConfigDir(tmp_path / "conf")
    config.service("web", type="notify", fd_store_max=1, restart="always", restart_delay=0.5,
                   command=[*config.python("web", SERVICE), str(events), str(path)])
    with running(config, mode, tmp_path) as roost:
        first = roost.wait_state("web", "up", timeout=30)
        assert first["fds_stored"] == 1
        # Its pid as it sees itself: roost's own, as PID 1, is the namespace's too.
        assert answer(ask(path)) == first["pid"]
        roost.wait_output(r"web: FDSTORE=1: 1 descriptors not kept \(fd_store_max = 1")
        roost.call("signal", services=["web"], signal="KILL")
        # Down, or backing off: the socket is roost's now, and a client waits in its queue.
        waiting = ask(path)
        again = wait_for(lambda: (r := roost.status("web"))["state"] == "up"
                         and r["pid"] != first["pid"] and r, timeout=30, what="a new run")
        assert isinstance(again, dict)
        # Served by the next run, over the socket the first one made.
        assert answer(waiting) == again["pid"]
        assert roost.status("web")["restarts"] == 1
        assert events.read_text().splitlines() == ["made", "handed 1 http"]
        stopped(roost)
        with pytest.raises(ConnectionRefusedError):
            ask(path)  # nobody holds the socket any more
        roost.call("start", services=["web"], wait=True, timeout=15)
        assert events.read_text().splitlines()[-1] == "made", "a stopped service starts afresh"


def stopped(roost: Roost) -> None:
    """Stop web: what it stored is closed, and roost says so."""
    roost.call("stop", services=["web"], wait=True, timeout=30)
    assert roost.status("web")["fds_stored"] == 0
    roost.wait_output(r"web: closed 1 stored descriptors")
