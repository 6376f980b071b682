"""The two channels a service says it is ready on: a notification fd (s6) and $NOTIFY_SOCKET.

A notification fd is a fresh pipe per start: the service gets the write end at
fd N and writes a newline when ready; only the first newline counts. The notify
socket is a datagram socket per service, kept across restarts; each datagram
carries newline-separated KEY=VALUE fields and the sender's credentials
(SCM_CREDENTIALS). What a datagram means, and whether its sender may say it, is
readiness.py's.
"""

from __future__ import annotations

import array
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
# The most descriptors one message can carry (SCM_MAX_FD): room for all of them, so
# that a datagram with descriptors (sd_notify_barrier's) is not cut, and every one of
# them reaches roost to be closed.
SCM_MAX_FD = 253
_ANCILLARY = socket.CMSG_SPACE(_UCRED.size) + socket.CMSG_SPACE(SCM_MAX_FD * 4)

class NotificationFd:
    """One start's notification pipe; calls `on_ready()` at the first newline.

    With `any_byte` (dinit's pipevar: "a message"), at the first byte of any kind.
    """

    __slots__ = ("_any", "_loop", "_on_ready", "read_fd", "write_fd")

    def __init__(self, loop: Loop, on_ready: Callable[[], None], any_byte: bool = False):
        self._loop = loop
        self._on_ready = on_ready
        self._any = any_byte
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
        if b"\n" in data or (self._any and data):
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
    """A service's $NOTIFY_SOCKET; calls `on_message(pid, fields, fds)` per datagram.

    `fields` is None for a datagram that is not a notification: cut at MAX_DATAGRAM,
    or holding a NUL byte or bytes that are not UTF-8. `fds` are the descriptors it
    carried: the callee takes those it keeps out of the list; the rest are closed.
    """

    __slots__ = ("_loop", "_on_message", "_sock", "address")

    def __init__(self, loop: Loop, name: str,
                 on_message: Callable[[int, dict[str, str] | None, list[int]], None]):
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
                    MAX_DATAGRAM, _ANCILLARY, socket.MSG_CMSG_CLOEXEC)
            except (BlockingIOError, InterruptedError):
                return
            pid = 0
            passed: list[int] = []
            for level, kind, payload in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = _UCRED.unpack(payload[: _UCRED.size])[0]
                elif level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    passed += _descriptors(payload)
            whole = not flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC)
            try:
                self._on_message(pid, parse(data) if whole else None, passed)
            finally:
                # What was not stored is closed. That ends a sender's BARRIER=1 wait
                # (its pipe's last write end): only once the datagram is done with,
                # for the sender may exit then, and a sender gone cannot be told to be
                # a process of the service.
                for fd in passed:
                    _close(fd)

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


def _descriptors(payload: bytes) -> list[int]:
    fds = array.array("i")
    fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
    return list(fds)


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass
