"""How services say they are ready: a notification fd (s6) or $NOTIFY_SOCKET (sd_notify).

A notification fd is a fresh pipe per start: the service gets the write end at
fd N and writes a newline when ready; only the first newline counts. The notify
socket is a datagram socket per service, kept across restarts; each datagram
carries newline-separated KEY=VALUE fields and the sender's credentials
(SCM_CREDENTIALS). A datagram speaks for the service only if its sender is a
process of the service (`admitted`): never by uid, since any process of that
uid, or root, outside the service could otherwise mark it ready.
"""

from __future__ import annotations

import os
import socket
import struct

from roost.kernel.loop import READ

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from roost.kernel.loop import Loop

_UCRED = struct.Struct("iII")
MAX_DATAGRAM = 4096


def admitted(access: str, pid: int, main_pid: int | None, member: Callable[[int], bool]) -> bool:
    """Whether a datagram from `pid` may speak for the service under `notify_access`.

    "exec" is "main": roost runs no process for a service besides its main one. A pid
    of 0 is a sender in another PID namespace, which cannot be told apart from anyone.
    """
    if access == "none" or pid <= 0:
        return False
    if pid == main_pid:
        return True
    return access == "all" and member(pid)


class NotificationFd:
    """One start's notification pipe; calls `on_ready()` at the first newline."""

    __slots__ = ("_loop", "_on_ready", "read_fd", "write_fd")

    def __init__(self, loop: Loop, on_ready: Callable[[], None]):
        self._loop = loop
        self._on_ready = on_ready
        self.read_fd, self.write_fd = os.pipe2(os.O_CLOEXEC)
        os.set_blocking(self.read_fd, False)
        loop.watch(self.read_fd, READ, self._readable)

    def spawned(self) -> None:
        """Drop roost's copy of the write end once the child holds it, so EOF can be seen."""
        if self.write_fd >= 0:
            os.close(self.write_fd)
            self.write_fd = -1

    def _readable(self, _events: int) -> None:
        try:
            data = os.read(self.read_fd, 4096)
        except BlockingIOError:
            return
        if b"\n" in data:
            self.close()
            self._on_ready()
        elif not data:
            self.close()

    def close(self) -> None:
        """Release both ends; safe to call twice."""
        if self.read_fd >= 0:
            self._loop.unwatch(self.read_fd)
            os.close(self.read_fd)
            self.read_fd = -1
        self.spawned()


class NotifySocket:
    """A service's $NOTIFY_SOCKET; calls `on_message(pid, fields)` per datagram.

    `fields` is None for a datagram that is not a notification: cut at MAX_DATAGRAM,
    or holding a NUL byte or bytes that are not UTF-8.
    """

    __slots__ = ("_loop", "_on_message", "_sock", "address")

    def __init__(self, loop: Loop, name: str,
                 on_message: Callable[[int, dict[str, str] | None], None]):
        self._loop = loop
        self._on_message = on_message
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        # Abstract names need no writable filesystem; the random part keeps two
        # roosts (or two instances of one service name) apart.
        tag = os.urandom(6).hex()
        sock.bind(f"\0roost/notify/{os.getpid()}/{name}/{tag}")
        self._sock = sock
        self.address = "@" + sock.getsockname()[1:].decode()
        loop.watch(sock.fileno(), READ, self._readable)

    def _readable(self, _events: int) -> None:
        while True:
            try:
                data, ancdata, flags, _addr = self._sock.recvmsg(
                    MAX_DATAGRAM, socket.CMSG_SPACE(_UCRED.size))
            except (BlockingIOError, InterruptedError):
                return
            pid = 0
            for level, kind, payload in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = _UCRED.unpack(payload[: _UCRED.size])[0]
            whole = not flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC)
            self._on_message(pid, parse(data) if whole else None)

    def close(self) -> None:
        """Stop listening and release the socket."""
        self._loop.unwatch(self._sock.fileno())
        self._sock.close()


def parse(data: bytes) -> dict[str, str] | None:
    """Split an sd_notify datagram into its KEY=VALUE fields; None if it holds NUL or non-UTF-8.

    A line without `=` is ignored, as systemd ignores it.
    """
    if b"\0" in data:
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    fields = {}
    for line in text.split("\n"):
        key, sep, value = line.partition("=")
        if sep and key:
            fields[key] = value
    return fields
