"""The control client: one request, one reply (or a stream of events)."""

from __future__ import annotations

import os
import socket
import stat
import struct

from roost.control import protocol

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator


class NotRunning(Exception):
    """Nothing answers on the control address."""


class Untrusted(NotRunning):
    """The control address is in a place, or served by a user, that the client must not trust."""


class RemoteError(Exception):
    """roost answered with an error: `code` and `message`."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class Client:
    """A connection to a running roost's control socket."""

    def __init__(self, address: str | None = None, timeout: float | None = 30.0):
        # Not told where: the user's own roost, then the system's (protocol.client_addresses).
        self.candidates = [address] if address else protocol.client_addresses()
        self.address = self.candidates[0]
        self.fell_back = False  # True once connected to a later candidate than the first
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._lines = protocol.LineDecoder(protocol.MAX_REPLY)
        self._next_id = 0

    def connect(self) -> None:
        """Connect to the first candidate that answers; raise NotRunning when none does.

        A candidate that answers but is refused (Untrusted) ends the search: a
        socket planted where the user's own roost belongs must not be skipped quietly.
        """
        missed: list[NotRunning] = []
        for address in self.candidates:
            self.address = address
            try:
                self._connect()
            except Untrusted:
                raise
            except NotRunning as exc:
                missed.append(exc)
                continue
            self.fell_back = address != self.candidates[0]
            return
        if len(missed) == 1:
            raise missed[0]
        raise NotRunning("roost is not running: nothing listens on "
                         + " nor on ".join(self.candidates)
                         + "; pass --control ADDR (or set ROOST_CONTROL) to reach another roost")

    def _connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        sock.settimeout(self.timeout)
        try:
            if not self.address.startswith("@"):
                _check_path(self.address)
            sock.connect(protocol.socket_address(self.address))
            # Whoever listens, on a path or an abstract name, must be root or this
            # user: anyone else could answer with lies or collect what is sent.
            uid = struct.unpack("iII", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                       12))[1]
            if uid not in (0, os.geteuid()):
                raise Untrusted(f"will not talk to {self.address}: it is served by uid {uid}, "
                                "neither root nor you")
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            sock.close()
            raise NotRunning(f"roost is not running (nothing listens on {self.address}: "
                             f"{exc.strerror})") from None
        except protocol.UnsafeAddress as exc:
            sock.close()
            raise Untrusted(f"will not talk to {self.address}: {exc}") from None
        except PermissionError as exc:
            sock.close()
            raise NotRunning(f"cannot reach roost at {self.address}: {exc.strerror}") from None
        except BaseException:
            sock.close()
            raise
        self._sock = sock

    def close(self) -> None:
        """Close the connection."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> Client:
        if self._sock is None:
            self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, cmd: str, args: dict[str, object] | None = None) -> int:
        """Send one request; return its id."""
        if self._sock is None:
            self.connect()
        assert self._sock is not None
        self._next_id += 1
        self._sock.sendall(protocol.request(cmd, args, self._next_id))
        return self._next_id

    def receive(self) -> dict[str, object]:
        """Read the next message line."""
        assert self._sock is not None
        while True:
            try:
                line = self._lines.line()
            except protocol.TooLong as exc:
                raise RemoteError(protocol.TOO_LARGE, f"reply {exc}") from None
            if line is not None:
                break
            try:
                data = self._sock.recv(65536)
            except TimeoutError:
                raise RemoteError(protocol.TIMEOUT, "roost did not answer in time") from None
            if not data:
                raise RemoteError(protocol.FAILED, "roost closed the connection")
            self._lines.feed(data)
        try:
            return protocol.decode_reply(line)
        except protocol.ProtocolError as exc:
            raise RemoteError(exc.code, exc.message) from None

    def call(self, cmd: str, **args: object) -> object:
        """Send a request and return its result; raise RemoteError on an error reply."""
        self.send(cmd, args)
        reply = self.receive()
        if not reply.get("ok"):
            err = reply.get("error")
            if isinstance(err, dict):
                raise RemoteError(str(err.get("code")), str(err.get("message")))
            raise RemoteError(protocol.FAILED, "malformed error reply")
        return reply.get("result")

    def events(self) -> Iterator[dict[str, object]]:
        """Yield streamed events until roost closes the connection."""
        while True:
            try:
                message = self.receive()
            except RemoteError:
                return
            payload = message.get("event")
            if isinstance(payload, dict):
                yield payload


def _check_path(path: str) -> None:
    """Refuse a socket (or its directory) that another user controls; symlinks are not followed."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.lexists(directory):
        raise FileNotFoundError(2, "No such file or directory")
    protocol.check_directory(directory, private=False)
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        raise protocol.UnsafeAddress(f"{path} is a symbolic link")
    if st.st_uid not in (0, os.geteuid()):
        raise protocol.UnsafeAddress(f"{path} is owned by uid {st.st_uid}, neither root nor you")


def call(cmd: str, address: str | None = None, timeout: float | None = 30.0,
         **args: object) -> object:
    """Connect, make one request, return its result."""
    with Client(address, timeout) as client:
        return client.call(cmd, **args)
