"""The control server inside roost: non-blocking, bounded, and authorizing every request.

Any local user may connect. Each request is authorized here and only here,
from the peer's kernel-reported credentials (SO_PEERCRED, SO_PEERGROUPS):
ping and status from anyone, the rest from root or the control group. A
malformed or oversized request gets an error reply and the server goes on; a
connection that makes no complete request (and gets no reply) for IDLE_TIMEOUT
seconds is closed; a client that stops reading is dropped once its backlog
exceeds a bound. Other users share fewer connections than root and the control
group may open, each uid a few: none of them can lock root out.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import stat
import struct
import time

from roost.control import protocol
from roost.kernel import console
from roost.kernel.loop import READ, WRITE

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from roost.kernel.loop import Loop, Timer

SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)
MAX_CONNECTIONS = 256
RESERVED = 64  # of MAX_CONNECTIONS, only for root and the control group
PER_UID = 16  # connections one uid other than root may hold at once
MAX_BACKLOG = 4 * 1024 * 1024  # bytes queued for a slow reader before it is dropped
# Out of descriptors, the listening socket is left alone this long, doubling.
PAUSE_FIRST, PAUSE_MAX = 0.1, 2.0
STARVED = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_UCRED = struct.Struct("iII")


class Peer:
    """Who is on the other end, as the kernel says."""

    __slots__ = ("gid", "groups", "pid", "uid")

    def __init__(self, pid: int, uid: int, gid: int, groups: tuple[int, ...]):
        self.pid = pid
        self.uid = uid
        self.gid = gid
        self.groups = groups

    def describe(self) -> str:
        """Who it is, for the log: `uid 1000 (alice, pid 4242)`."""
        name = _local_user(self.uid)
        user = f"{name}, " if name else ""
        if self.pid == 0:
            return f"uid {self.uid} ({user}a process outside this PID namespace)"
        return f"uid {self.uid} ({user}pid {self.pid})"


def _local_user(uid: int) -> str | None:
    """The name /etc/passwd gives `uid`, read from the file itself.

    Not through NSS (pwd): a network user database (LDAP, sssd) could stall PID 1 in
    the middle of a request, and a name is only for the log.
    """
    try:
        with open("/etc/passwd", encoding="utf-8", errors="replace") as f:
            for line in f:
                fields = line.split(":", 3)
                if len(fields) > 2 and fields[2] == str(uid):
                    return fields[0]
    except OSError:
        pass
    return None


class Connection:
    """One client connection: buffers, credentials, and its reply function."""

    __slots__ = ("_idle", "_in", "_last", "_out", "awaiting", "closed", "on_close", "peer",
                 "server", "sock", "streaming", "trusted")

    def __init__(self, server: ControlServer, sock: socket.socket, peer: Peer, trusted: bool):
        self.server = server
        self.sock = sock
        self.peer = peer
        self.trusted = trusted  # root or the control group when it connected
        self._in = protocol.LineDecoder(protocol.MAX_MESSAGE)
        self._out = bytearray()
        self._last = time.monotonic()  # the last complete request or reply progress
        self._idle: Timer | None = server.loop.call_later(protocol.IDLE_TIMEOUT, self._idle_out)
        self.closed = False
        self.awaiting = 0  # requests whose reply comes later (a waiting start)
        self.streaming = False  # a follower: kept while it has nothing unread
        self.on_close: list[Callable[[], None]] = []

    def send(self, data: bytes) -> None:
        """Queue bytes for the client; drop the client if it does not keep up."""
        if self.closed:
            return
        # Judged before queueing: one reply larger than the bound still reaches a
        # client that reads it; a client that does not is dropped at the next one.
        if len(self._out) > MAX_BACKLOG:
            console.say(f"control: dropping client pid {self.peer.pid}: not reading")
            self.close()
            return
        self._out += data
        self._flush()

    def _flush(self) -> None:
        while self._out:
            try:
                sent = self.sock.send(self._out)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self.close()
                return
            del self._out[:sent]
            self._last = time.monotonic()
        events = READ | WRITE if self._out else READ
        self.server.loop.modify(self.sock.fileno(), events)

    def close(self) -> None:
        """Close the connection and run its close hooks."""
        if self.closed:
            return
        self.closed = True
        if self._idle is not None:
            self._idle.cancel()
        self.server.loop.unwatch(self.sock.fileno())
        self.sock.close()
        self.server.forget(self)
        for hook in self.on_close:
            hook()

    def _idle_out(self) -> None:
        # Bytes alone do not count: a client trickling one byte at a time would
        # otherwise hold its connection for ever.
        left = self._last + protocol.IDLE_TIMEOUT - time.monotonic()
        if left > 0 or self.awaiting or (self.streaming and not self._out):
            self._idle = self.server.loop.call_later(left if left > 0 else protocol.IDLE_TIMEOUT,
                                                     self._idle_out)
            return
        self._idle = None
        if self._in.pending:
            self.send(protocol.error(None, protocol.TIMEOUT, "incomplete request: timed out"))
        self.close()

    def on_events(self, events: int) -> None:
        """Read requests, write backlog, notice hang-ups."""
        if events & WRITE:
            self._flush()
        # An event is this socket's own: the reactor drops those of a closed
        # descriptor whose number was reused (docs/DESIGN.md, "Descriptor reuse").
        if events & (select.EPOLLHUP | select.EPOLLERR) and not events & select.EPOLLIN:
            self.close()
        if not events & READ or self.closed:
            return
        try:
            data = self.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close()
            return
        if not data:
            self.close()
            return
        self._in.feed(data)
        while not self.closed:
            try:
                line = self._in.line()
            except protocol.TooLong as exc:
                self.send(protocol.error(None, protocol.TOO_LARGE, f"request {exc}"))
                if not exc.complete:
                    self.close()
                continue
            if line is None:
                return
            if line.strip():
                self._last = time.monotonic()
                self.server.serve(self, line)


class ControlServer:
    """Listens on a unix socket and hands each authorized request to `dispatch`."""

    def __init__(self, loop: Loop, address: str,
                 dispatch: Callable[[Connection, object, str, dict[str, object]], None],
                 control_gid: int | None = None):
        self.loop = loop
        self.address = address
        self.dispatch = dispatch
        self.control_gid = control_gid
        self.connections: set[Connection] = set()
        self._per_uid: dict[int, int] = {}
        self._untrusted = 0
        self._sock = _listen(address)
        # Kept to be given up when out of descriptors: enough to accept one
        # connection and refuse it with a reply, rather than leave it hanging.
        self._spare: int | None = _dup(self._sock.fileno())
        self._pause = 0.0  # the current back-off while out of descriptors, or 0
        self._starved_since = 0.0
        self._refused = 0
        self._resume: Timer | None = None
        loop.watch(self._sock.fileno(), READ, self._accept)

    def _accept(self, _events: int) -> None:
        while True:
            try:
                sock, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                self._fed()
                return
            except OSError as exc:
                if exc.errno in STARVED:
                    self._starve(exc.strerror or "out of descriptors")
                return
            self._fed()
            sock.setblocking(False)
            peer = _peer(sock)
            trusted = self.trusted(peer)
            refusal = self._refusal(peer, trusted)
            if refusal:
                _refuse(sock, refusal)
                continue
            if not trusted:
                self._untrusted += 1
            if peer.uid != 0:
                self._per_uid[peer.uid] = self._per_uid.get(peer.uid, 0) + 1
            conn = Connection(self, sock, peer, trusted)
            self.connections.add(conn)
            self.loop.watch(sock.fileno(), READ, conn.on_events)

    def _refusal(self, peer: Peer, trusted: bool) -> str:
        if len(self.connections) >= MAX_CONNECTIONS or (
                not trusted and self._untrusted >= MAX_CONNECTIONS - RESERVED):
            return "too many connections"
        if peer.uid != 0 and self._per_uid.get(peer.uid, 0) >= PER_UID:
            return f"too many connections from uid {peer.uid} (at most {PER_UID} at once)"
        return ""

    def forget(self, conn: Connection) -> None:
        """Count a closed connection out."""
        if conn not in self.connections:
            return
        self.connections.discard(conn)
        if not conn.trusted:
            self._untrusted -= 1
        uid = conn.peer.uid
        if uid in self._per_uid:
            self._per_uid[uid] -= 1
            if not self._per_uid[uid]:
                del self._per_uid[uid]

    def _starve(self, reason: str) -> None:
        """Out of descriptors: refuse one waiting client, then stop watching for a while.

        accept() fails at once again while nothing is freed: watching the socket
        would spin the reactor and flood the log.
        """
        if not self._pause:
            self._starved_since = time.monotonic()
            self._refused = 0
        if self._spare is not None:
            os.close(self._spare)
            try:
                sock, _ = self._sock.accept()
            except OSError:
                pass
            else:
                self._refused += 1
                _refuse(sock, f"roost is out of descriptors ({reason}); try again later")
            self._spare = _dup(self._sock.fileno())
        self._pause = min(self._pause * 2, PAUSE_MAX) if self._pause else PAUSE_FIRST
        self.loop.unwatch(self._sock.fileno())
        self._resume = self.loop.call_later(self._pause, self._rewatch)

    def _rewatch(self) -> None:
        self._resume = None
        self.loop.watch(self._sock.fileno(), READ, self._accept)

    def _fed(self) -> None:
        """Accepting again: end an episode of starvation with its one log line."""
        if self._pause:
            self._pause = 0.0
            console.say(f"control: out of descriptors, not accepting for "
                        f"{time.monotonic() - self._starved_since:.1f}s; "
                        f"{self._refused} refused")

    def trusted(self, peer: Peer) -> bool:
        """Root, or a member of the control group."""
        gid = self.control_gid
        return peer.uid == 0 or (gid is not None and (peer.gid == gid or gid in peer.groups))

    def permitted(self, peer: Peer, cmd: str) -> bool:
        """The one authorization rule: ping and status for all, the rest for the trusted."""
        return cmd in protocol.OPEN_TO_ALL or self.trusted(peer)

    def serve(self, conn: Connection, line: bytes) -> None:
        """Decode, authorize and dispatch one request line; every request gets its reply."""
        try:
            ident, cmd, args = protocol.decode_request(line)
        except protocol.ProtocolError as exc:
            conn.send(protocol.error(exc.ident, exc.code, exc.message))
            return
        if not self.permitted(conn.peer, cmd):
            conn.send(protocol.error(ident, protocol.NOT_PERMITTED,
                                     f"{cmd}: permitted to root"
                                     + (" and the control group" if self.control_gid is not None
                                        else "") + f" only (you are uid {conn.peer.uid})"))
            return
        try:
            self.dispatch(conn, ident, cmd, args)
        except protocol.ProtocolError as exc:
            conn.send(protocol.error(ident, exc.code, exc.message))
        except Exception as exc:  # noqa: BLE001 - a failed command must not end the server
            console.error_trace(f"control command {cmd}")
            conn.send(protocol.error(ident, protocol.FAILED, f"{cmd} failed: {exc}"))

    def close(self) -> None:
        """Stop listening, close every connection, remove the socket file."""
        if self._resume is not None:
            self._resume.cancel()
        else:
            self.loop.unwatch(self._sock.fileno())
        if self._spare is not None:
            os.close(self._spare)
            self._spare = None
        self._sock.close()
        for conn in list(self.connections):
            conn.close()
        if not self.address.startswith("@"):
            try:
                os.unlink(self.address)
            except OSError:
                pass


def _dup(fd: int) -> int | None:
    try:
        return os.dup(fd)
    except OSError:
        return None


def _refuse(sock: socket.socket, message: str) -> None:
    try:
        sock.setblocking(False)
        sock.send(protocol.error(None, protocol.FAILED, message))
    except OSError:
        pass
    sock.close()


def _peer(sock: socket.socket) -> Peer:
    pid, uid, gid = _UCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                  _UCRED.size))
    groups: tuple[int, ...] = ()
    try:
        # CPython refuses a buffer over 1024 bytes: room for 256 groups. A peer in
        # more gets ERANGE and is judged by its uid and primary group alone.
        raw = sock.getsockopt(socket.SOL_SOCKET, SO_PEERGROUPS, 1024)
        groups = struct.unpack(f"{len(raw) // 4}I", raw[: len(raw) // 4 * 4])
    except OSError:
        pass
    return Peer(pid, uid, gid, groups)


class AddressInUse(Exception):
    """Another roost already answers on the control address."""


def _listen(address: str) -> socket.socket:
    if not address.startswith("@"):
        _directory(os.path.dirname(os.path.abspath(address)))
        _remove_stale(address)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    sock.setblocking(False)
    target = protocol.socket_address(address)
    try:
        sock.bind(target)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise AddressInUse(f"another roost already listens on {address}") from None
        raise
    if not address.startswith("@"):
        # Everyone may connect: each request is authorized by its credentials.
        os.chmod(address, 0o666)
    sock.listen(64)
    return sock


def _directory(directory: str) -> None:
    """Make the socket's directory if missing; refuse one another user controls."""
    private = os.geteuid() != 0 and directory == os.path.abspath(protocol.user_directory())
    if private:
        # Never makedirs: a parent planted by someone else must not be followed.
        try:
            os.mkdir(directory, 0o700)
        except FileExistsError:
            pass
    else:
        os.makedirs(directory, mode=0o755, exist_ok=True)
    protocol.check_directory(directory, private)


def _remove_stale(path: str) -> None:
    """Remove a socket file left by a roost that is gone; refuse if one still answers."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise AddressInUse(f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        probe.connect(path)
    except OSError:
        os.unlink(path)
        return
    finally:
        probe.close()
    raise AddressInUse(f"another roost already listens on {path}")
