"""How services say they are ready: a notification fd (s6) or $NOTIFY_SOCKET (sd_notify).

A notification fd is a fresh pipe per start: the service gets the write end at
fd N and writes a newline when ready; only the first newline counts. The notify
socket is a datagram socket per service, kept across restarts; each datagram
carries newline-separated KEY=VALUE fields and the sender's credentials
(SCM_CREDENTIALS). A datagram speaks for the service only if its sender is a
process of the service (`admitted`): never by uid, since any process of that
uid, or root, outside the service could otherwise mark it ready. Notifications
carries out what an admitted one says, field by field as sd_notify(3) defines them,
as events of the service's machine.
"""

from __future__ import annotations

import array
import errno as errnos
import os
import socket
import struct

from roost.config.check import MAX_PIDS, MAX_SECONDS
from roost.core import machine
from roost.kernel import console
from roost.kernel.loop import READ

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from roost.core.actions import Action
    from roost.kernel.loop import Loop
    from roost.supervise.forking import Daemons
    from roost.supervise.runtime import Runtime
    from roost.tracking import Tracker

_UCRED = struct.Struct("iII")
MAX_DATAGRAM = 4096
# The most descriptors one message can carry (SCM_MAX_FD): room for all of them, so
# that a datagram with descriptors (sd_notify_barrier's) is not cut, and every one of
# them reaches roost to be closed.
SCM_MAX_FD = 253
_ANCILLARY = socket.CMSG_SPACE(_UCRED.size) + socket.CMSG_SPACE(SCM_MAX_FD * 4)
MAX_USEC = MAX_SECONDS * 1_000_000
MAX_ERRNO = 4095


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
                    MAX_DATAGRAM, _ANCILLARY, socket.MSG_CMSG_CLOEXEC)
            except (BlockingIOError, InterruptedError):
                return
            pid = 0
            passed: list[bytes] = []
            for level, kind, payload in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = _UCRED.unpack(payload[: _UCRED.size])[0]
                elif level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    passed.append(payload)
            whole = not flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC)
            try:
                self._on_message(pid, parse(data) if whole else None)
            finally:
                # roost stores no descriptors. Closing them ends a sender's BARRIER=1
                # wait (its pipe's last write end): only once the datagram is done
                # with, for the sender may exit then, and a sender gone cannot be
                # told to be a process of the service.
                for payload in passed:
                    _close_all(payload)

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


def _close_all(payload: bytes) -> None:
    fds = array.array("i")
    fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def sometimes(count: int) -> bool:
    """Log the 1st, 2nd, 4th, 8th... of a kind: a flood of them cannot flood the console."""
    return count & (count - 1) == 0


class Notes:
    """What a notify service said of itself beyond READY=1: its phase, errno, exit status."""

    __slots__ = ("errno", "exit_status", "ignored", "last", "phase", "phase_since")

    def __init__(self) -> None:
        # "reloading" (RELOADING=1, until READY=1) or "stopping" (STOPPING=1), and since when.
        self.phase = ""
        self.phase_since = 0.0
        self.errno: int | None = None
        self.exit_status: int | None = None
        # What the run before this one said of its end, shown with its exit.
        self.last = ""
        self.ignored = 0

    def spawned(self) -> None:
        """A new run begins: what the last one said goes with its exit; its phase is over."""
        self.last = self.of_exit()
        self.errno = self.exit_status = None
        self.phase = ""

    def of_exit(self) -> str:
        """ERRNO= and EXIT_STATUS= of this run as shown beside its exit ("" if neither)."""
        said = []
        if self.errno is not None:
            name = errnos.errorcode.get(self.errno)
            said.append(f"ERRNO={self.errno}" + (f" ({name}: {os.strerror(self.errno)})"
                                                 if name else ""))
        if self.exit_status is not None:
            said.append(f"EXIT_STATUS={self.exit_status}")
        return ", ".join(said)


class Notifications:
    """Datagrams on the services' notify sockets, admitted or refused, carried out."""

    def __init__(self, loop: Loop, tracker: Tracker, daemons: Daemons,
                 event: Callable[[Runtime, list[Action]], None]):
        self._loop = loop
        self._tracker = tracker
        self._daemons = daemons
        self._event = event

    def message(self, rt: Runtime, pid: int, fields: dict[str, str] | None) -> None:
        """One datagram from `pid` (`fields` None: not a notification): counted, or done."""
        if fields is None:
            rt.notify_malformed += 1
            if sometimes(rt.notify_malformed):
                console.say(f"{rt.name}: dropped a datagram on the notify socket that is not a "
                            f"notification (from pid {pid}; {rt.notify_malformed} so far)")
            return
        if not admitted(rt.config.notify_access, pid, rt.machine.pid,
                        lambda p: self._tracker.belongs(rt.name, p)):
            rt.notify_refused += 1
            if sometimes(rt.notify_refused):
                access = rt.config.notify_access
                who = "a process" if access == "all" else "the main process"
                console.say(f"{rt.name}: refused a notification from pid {pid}: not {who} of "
                            f"the service (notify_access = \"{access}\"; "
                            f"{rt.notify_refused} refused so far)")
            return
        self.fields(rt, fields)

    def fields(self, rt: Runtime, fields: dict[str, str]) -> None:
        """An admitted notification's fields, in systemd's order, as the machine's events.

        BARRIER=1 needs nothing more: its descriptor is closed on receipt.
        """
        m, notes, now = rt.machine, rt.notes, self._loop.now()
        if "MAINPID" in fields:
            pid = self._number(rt, fields, "MAINPID", MAX_PIDS, low=1)
            if pid is not None:
                self._main_pid(rt, pid)
        if fields.get("STOPPING") == "1":
            notes.phase, notes.phase_since = "stopping", now
        if fields.get("RELOADING") == "1":
            # MONOTONIC_USEC: when the reload began, on the clock roost's loop reads.
            began = self._number(rt, fields, "MONOTONIC_USEC", MAX_USEC) \
                if "MONOTONIC_USEC" in fields else None
            notes.phase = "reloading"
            notes.phase_since = now if began is None else min(began / 1e6, now)
        if fields.get("READY") == "1":
            if notes.phase == "reloading":
                notes.phase = ""
            self._event(rt, m.ready(now))
        if "STATUS" in fields:
            rt.status_text = fields["STATUS"]
        if "ERRNO" in fields:
            notes.errno = self._number(rt, fields, "ERRNO", MAX_ERRNO)
        if "EXIT_STATUS" in fields:
            notes.exit_status = self._number(rt, fields, "EXIT_STATUS", 255)
        if fields.get("WATCHDOG") == "1":
            self._event(rt, m.keepalive(now))
        elif fields.get("WATCHDOG") == "trigger":
            self._event(rt, m.timer(machine.T_WATCHDOG, now))
        if "WATCHDOG_USEC" in fields:
            usec = self._number(rt, fields, "WATCHDOG_USEC", MAX_USEC)
            if usec is not None:
                self._event(rt, m.keepalive(now, usec / 1e6))
        if "EXTEND_TIMEOUT_USEC" in fields:
            usec = self._number(rt, fields, "EXTEND_TIMEOUT_USEC", MAX_USEC)
            if usec is not None:
                self._event(rt, m.extend(usec / 1e6, now))

    def _main_pid(self, rt: Runtime, pid: int) -> None:
        """MAINPID=: taken only for a live process of the service, pinned before it counts."""
        m = rt.machine
        if pid == m.pid or m.state not in (machine.STARTING, machine.UP):
            return
        if not self._tracker.belongs(rt.name, pid):
            self._ignored(rt, f"MAINPID={pid} refused: not a process of {rt.name}")
        elif rt.child is not None and rt.child.pid == pid:
            # Back to the process roost started, whose exit roost sees anyway.
            self._tracker.unwatch_main(rt.name)
            self._event(rt, m.main_changed(pid, self._loop.now()))
        elif self._daemons.follow(rt, pid):
            console.say(f"{rt.name}: main process is now {pid} (MAINPID)")

    def _number(self, rt: Runtime, fields: dict[str, str], key: str, high: int,
                low: int = 0) -> int | None:
        value = fields[key]
        if len(value) <= 20 and value.isascii() and value.isdigit() and \
                low <= int(value) <= high:
            return int(value)
        self._ignored(rt, f"{key}={value[:40]!r} ignored: not a whole number from {low} to "
                      f"{high}")
        return None

    def _ignored(self, rt: Runtime, what: str) -> None:
        rt.notes.ignored += 1
        if sometimes(rt.notes.ignored):
            console.say(f"{rt.name}: {what} ({rt.notes.ignored} fields ignored so far)")
