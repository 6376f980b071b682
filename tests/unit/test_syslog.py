"""Service output to a syslog socket: the datagrams, drops counted, a daemon that restarts."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from roost.kernel import syslog
from roost.kernel.ready import Refused


def test_a_message_is_what_syslog3_sends() -> None:
    when = time.mktime((2026, 3, 4, 5, 6, 7, 0, 0, -1))
    assert syslog.message(3, 6, "web", "hello", when) == b"<30>Mar  4 05:06:07 web: hello"
    # A level prefix (sd-daemon(3)) chooses the severity and is left out.
    assert syslog.message(3, 6, "web", "<2>disk gone", when) == \
        b"<26>Mar  4 05:06:07 web: disk gone"
    assert syslog.message(16, 3, "web", "<9>not a level", when).endswith(b"web: <9>not a level")
    assert syslog.message(3, 6, "web", "<1", when).endswith(b"web: <1")


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[Path, list[socket.socket]]]:
    """A datagram socket in a directory only root may write in, like /dev/log."""
    path = tmp_path / "log"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    servers = [server]
    yield path, servers
    for s in servers:
        s.close()


def received(server: socket.socket) -> list[bytes]:
    got = []
    server.setblocking(False)
    while True:
        try:
            got.append(server.recv(65536))
        except BlockingIOError:
            return got


def test_lines_go_out_with_their_stream_severity(
        daemon: tuple[Path, list[socket.socket]]) -> None:
    path, servers = daemon
    sender = syslog.Syslog(str(path), "local3")
    sender.send("web", False, ["one", "two"], time.time())
    sender.send("web", True, ["oops"], time.time())
    got = received(servers[0])
    # local3 is facility 19: info 19*8+6, err 19*8+3.
    assert [g[:5] for g in got] == [b"<158>", b"<158>", b"<155>"], got
    assert [g.rsplit(b": ", 1)[1] for g in got] == [b"one", b"two", b"oops"]
    sender.close()


def test_absent_daemon_drops_and_counts_then_recovers(
        tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "log"
    sender = syslog.Syslog(str(path))
    sender.send("web", False, ["a", "b", "c"], time.time())
    sender.send("web", False, ["d"], time.time())
    assert sender.lost == 4
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    try:
        sender._retry_at = 0.0  # the second a refused connect waits, passed
        sender.send("web", False, ["e"], time.time())
        assert [g.rsplit(b": ", 1)[1] for g in received(server)] == [b"e"]
        assert sender.lost == 0
    finally:
        server.close()
        sender.close()
    err = capfd.readouterr().err
    assert err.count("lines dropped") == 1, err
    assert "taking lines again; 4 dropped" in err, err


def test_a_daemon_that_made_a_new_socket_is_reached_again(
        daemon: tuple[Path, list[socket.socket]]) -> None:
    path, servers = daemon
    sender = syslog.Syslog(str(path))
    sender.send("web", False, ["before"], time.time())
    assert len(received(servers[0])) == 1
    servers[0].close()
    path.unlink()
    fresh = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    fresh.bind(str(path))
    servers.append(fresh)
    sender.send("web", False, ["after"], time.time())
    assert [g.rsplit(b": ", 1)[1] for g in received(fresh)] == [b"after"]
    assert sender.lost == 0
    sender.close()


def test_a_full_socket_drops_instead_of_waiting(
        daemon: tuple[Path, list[socket.socket]]) -> None:
    path, servers = daemon
    sender = syslog.Syslog(str(path))
    started = time.monotonic()
    for _ in range(2000):  # the receive queue holds far fewer: the rest must be dropped
        sender.send("web", False, ["x" * 1000], time.time())
    assert time.monotonic() - started < 5
    assert sender.lost > 0
    assert len(received(servers[0])) + sender.lost == 2000
    sender.close()


def test_a_socket_another_user_could_replace_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(shared / "log"))
    try:
        with pytest.raises(Refused, match="another user could create the file"):
            syslog.trusted(str(shared / "log"))
        shared.chmod(0o755)
        os.chown(shared / "log", 65534, 65534)
        with pytest.raises(Refused, match="owned by uid 65534"):
            syslog.trusted(str(shared / "log"))
        sender = syslog.Syslog(str(shared / "log"))
        sender.send("web", False, ["secret"], time.time())
        assert sender.lost == 1 and received(server) == []
        os.chown(shared / "log", 0, 0)
        (tmp_path / "link").symlink_to(shared / "log")
        assert syslog.trusted(str(tmp_path / "link")) == str(shared / "log")
    finally:
        server.close()
