"""The reactor's probes on real sockets and files: a connect, an HTTP GET judged by its status
line, a server that never answers, a file made by the wrong user; none of them blocks."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest

from roost.kernel.loop import Loop
from roost.supervise.probes import Connect, Poll, file_ready, status


def run_until(loop: Loop, done: list[object], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not done:
        assert time.monotonic() < deadline, "the probe never reported"
        loop.run_once(0.05)


def probe(host: str, port: int, path: str | None = None,
          timeout: float = 5.0) -> tuple[bool, str]:
    loop = Loop()
    got: list[tuple[bool, str]] = []
    Connect(loop, host, port, timeout, lambda ok, text: got.append((ok, text)), path=path)
    assert got == []  # never from inside the constructor
    run_until(loop, got)  # type: ignore[arg-type]
    return got[0]


def listener(family: int = socket.AF_INET) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))
    sock.listen(8)
    return sock


def serve_once(sock: socket.socket, answer: bytes) -> threading.Thread:
    """Answer one connection with `answer` after reading its request (a thread: the test's)."""
    def run() -> None:
        conn, _ = sock.accept()
        with conn:
            request = b""
            while b"\r\n\r\n" not in request:
                data = conn.recv(4096)
                if not data:
                    break
                request += data
            conn.sendall(answer + b"|" + request.split(b"\r\n")[0])
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_connect_to_a_listener_and_to_nothing() -> None:
    with listener() as sock:
        port = sock.getsockname()[1]
        assert probe("127.0.0.1", port) == (True, f"connected to 127.0.0.1:{port}")
    assert probe("127.0.0.1", port) == (
        False, f"connect to 127.0.0.1:{port}: Connection refused")


def test_connect_over_ipv6() -> None:
    try:
        sock = listener(socket.AF_INET6)
    except OSError as exc:
        pytest.skip(f"NO IPv6 LOOPBACK HERE: {exc}")
    with sock:
        port = sock.getsockname()[1]
        assert probe("::1", port) == (True, f"connected to [::1]:{port}")


@pytest.mark.parametrize(("answer", "verdict"), [
    (b"HTTP/1.0 200 OK\r\n\r\n", True),
    (b"HTTP/1.1 204 No Content\r\n", True),
    (b"HTTP/1.1 302 Found\r\n", True),
    (b"HTTP/1.0 500 Internal Server Error\r\n", False),
    (b"HTTP/1.0 404 Not Found\r\n", False),
])
def test_http_status_line_decides(answer: bytes, verdict: bool) -> None:
    with listener() as sock:
        thread = serve_once(sock, answer)
        ok, text = probe("127.0.0.1", sock.getsockname()[1], "/healthz")
        thread.join(10)
    assert ok is verdict
    assert text == answer.split(b"\r\n")[0].decode()


def test_http_sends_a_get_of_the_path() -> None:
    with listener() as sock:
        thread = serve_once(sock, b"SEEN")
        ok, text = probe("127.0.0.1", sock.getsockname()[1], "/ready?x=1")
        thread.join(10)
    assert not ok
    assert text == "not an HTTP status line: SEEN|GET /ready?x=1 HTTP/1.0"


def test_a_server_that_never_answers_times_out_without_blocking() -> None:
    with listener() as sock:  # accepted by the kernel's backlog, never read
        started = time.monotonic()
        ok, text = probe("127.0.0.1", sock.getsockname()[1], "/", timeout=0.3)
        took = time.monotonic() - started
    print(f"timed out after {took:.3f}s")
    assert (ok, text) == (False, "no answer within 0.3s")


def test_status_lines() -> None:
    assert status(b"", False) == (False, "closed without an answer")
    assert status(b"HTTP/1.0 200 OK", False)[0] is False  # cut before its end
    assert status(b"HTTP/1.0 2000 OK", True)[0] is False
    assert status(b"HTTP/1.0 200 \x1b[31mOK", True) == (True, "HTTP/1.0 200 \\x1b[31mOK")
    assert len(status(b"HTTP/1.0 200 " + b"x" * 5000, True)[1]) == 200


def test_a_file_counts_only_when_made_by_an_owner(tmp_path: Path) -> None:
    path = tmp_path / "ready"
    assert not file_ready(str(path), {0})
    path.write_text("")
    os.chown(path, 65534, 65534)
    assert not file_ready(str(path), {0, 1000})
    assert file_ready(str(path), {0, 65534})
    link = tmp_path / "link"
    link.symlink_to(path)
    os.lchown(link, 65534, 65534)
    assert not file_ready(str(link), {0})  # the entry's owner, not its target's


def test_a_poll_backs_off_and_stops_when_ready(tmp_path: Path) -> None:
    loop = Loop()
    path = tmp_path / "ready"
    ready: list[float] = []
    poll = Poll(loop, f"file:{path}", {os.geteuid()}, lambda: ready.append(loop.now()))
    started = loop.now()
    while loop.now() - started < 1.2:
        loop.run_once(0.05)
    tries = poll.tries
    # 10 ms, then 20, 40, ... 640 ms apart: about 7 tries in 1.2 s, not a busy loop.
    print(f"{tries} tries in 1.2s")
    assert 4 <= tries <= 9
    path.write_text("")
    run_until(loop, ready)  # type: ignore[arg-type]
    assert poll.tries == tries + 1
    poll.cancel()


def test_a_server_that_talks_without_end_is_read_no_further_than_a_status_line() -> None:
    with listener() as sock:
        def flood() -> None:
            conn, _ = sock.accept()
            with conn:
                try:
                    while True:
                        conn.sendall(b"\x1b[2J" + b"x" * 65536)
                except OSError:
                    pass  # roost hung up once it had read enough
        thread = threading.Thread(target=flood, daemon=True)
        thread.start()
        ok, text = probe("127.0.0.1", sock.getsockname()[1], "/")
        thread.join(10)
    assert not ok
    assert text.startswith("not an HTTP status line: \\x1b[2Jxxx") and text.endswith("...")
    assert len(text) <= 230
