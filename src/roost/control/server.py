"""The control server inside roost: non-blocking, bounded, and authorizing every request.

Any local user may connect. Each request is authorized here and only here,
from the peer's kernel-reported credentials (SO_PEERCRED, SO_PEERGROUPS):
read-only commands from anyone, the rest from root or the control group. A
malformed or oversized request gets an error reply and the server goes on; a
connection that sends nothing for IDLE_TIMEOUT seconds is closed; a client that
stops reading is dropped once its backlog exceeds a bound.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import stat
import struct

from roost.control import protocol
from roost.kernel import console
from roost.kernel.loop import READ, WRITE

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from roost.kernel.loop import Loop, Timer

SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)
MAX_CONNECTIONS = 256
MAX_BACKLOG = 4 * 1024 * 1024  # bytes queued for a slow reader before it is dropped
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
        """Who it is, for the log: pid, command name and uid."""
        if self.pid == 0:
            return f"a process outside this PID namespace (uid {self.uid})"
        try:
            with open(f"/proc/{self.pid}/comm") as f:
                comm = f.read().strip()
        except OSError:
            comm = "?"
        return f"pid {self.pid} ({comm}, uid {self.uid})"


class Connection:
    """One client connection: buffers, credentials, and its reply function."""

    __slots__ = ("_idle", "_in", "_out", "closed", "on_close", "peer", "server", "sock",
                 "streaming")

    def __init__(self, server: ControlServer, sock: socket.socket, peer: Peer):
        self.server = server
        self.sock = sock
        self.peer = peer
        self._in = protocol.LineDecoder(protocol.MAX_MESSAGE)
        self._out = bytearray()
        self._idle: Timer | None = None
        self.closed = False
        self.streaming = False  # a follower: exempt from the idle timeout
        self.on_close: list[Callable[[], None]] = []

    def send(self, data: bytes) -> None:
        """Queue bytes for the client; drop the client if it does not keep up."""
        if self.closed:
            return
        self._out += data
        if len(self._out) > MAX_BACKLOG:
            console.say(f"control: dropping client pid {self.peer.pid}: not reading")
            self.close()
            return
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
        self.server.connections.discard(self)
        for hook in self.on_close:
            hook()

    def touch(self) -> None:
        """(Re)start the idle timer."""
        if self._idle is not None:
            self._idle.cancel()
        self._idle = self.server.loop.call_later(protocol.IDLE_TIMEOUT, self._idle_out)

    def _idle_out(self) -> None:
        if self.streaming:
            return
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
        self.touch()
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
        self._sock = _listen(address)
        loop.watch(self._sock.fileno(), READ, self._accept)

    def _accept(self, _events: int) -> None:
        while True:
            try:
                sock, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    console.say(f"control: cannot accept: {exc.strerror}")
                return
            sock.setblocking(False)
            if len(self.connections) >= MAX_CONNECTIONS:
                try:
                    sock.send(protocol.error(None, protocol.FAILED, "too many connections"))
                except OSError:
                    pass
                sock.close()
                continue
            conn = Connection(self, sock, _peer(sock))
            self.connections.add(conn)
            self.loop.watch(sock.fileno(), READ, conn.on_events)
            conn.touch()

    def permitted(self, peer: Peer, cmd: str) -> bool:
        """The one authorization rule: read-only for all, the rest for root or the group."""
        if cmd in protocol.READ_ONLY or peer.uid == 0:
            return True
        gid = self.control_gid
        return gid is not None and (peer.gid == gid or gid in peer.groups)

    def serve(self, conn: Connection, line: bytes) -> None:
        """Decode, authorize and dispatch one request line."""
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
        self.loop.unwatch(self._sock.fileno())
        self._sock.close()
        for conn in list(self.connections):
            conn.close()
        if not self.address.startswith("@"):
            try:
                os.unlink(self.address)
            except OSError:
                pass


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
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    sock.setblocking(False)
    target = protocol.socket_address(address)
    if not address.startswith("@"):
        directory = os.path.dirname(address)
        if directory:
            os.makedirs(directory, mode=0o755, exist_ok=True)
        _remove_stale(address)
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
