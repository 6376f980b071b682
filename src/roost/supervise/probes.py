"""Looking at a service, in the reactor: a TCP connect, an HTTP GET, a file, a command.

Nothing here blocks PID 1. A connect is non-blocking and its outcome is the loop's
event on the socket; every probe has a deadline, a timer; a poll's next try is a
timer too. Each probe reports once, `done(ok, text)`, and never from inside its own
constructor. Readiness by polling (`ready = "file:PATH"` or `"tcp:HOST:PORT"`) is a
Poll: tried soon after the spawn, then ever further apart. A probe command
(CommandProbe) is a process of its own, its output read from a pipe.
"""

from __future__ import annotations

import _signal
import errno
import os
import socket

from roost.config.errors import one_line
from roost.kernel.loop import READ, WRITE

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Collection

    from roost.kernel.loop import Loop, Timer
    from roost.kernel.spawn import Child

# Enough for any status line; what a server sends beyond it is never read.
MAX_RESPONSE = 4096
SHOWN = 200  # characters of what a probe saw that its text keeps
# A poll's first try comes this soon after the spawn; each wait doubles, up to LAST.
FIRST = 0.01
LAST = 1.0


def split_address(text: str) -> tuple[str, int]:
    """`HOST:PORT` or `[V6]:PORT`, as checked by config/probes.py: (host, port)."""
    host, _, port = text.rpartition(":")
    return host.removeprefix("[").removesuffix("]"), int(port)


def shown(data: bytes) -> str:
    """What a probe saw, as one printable line of at most SHOWN characters."""
    text = one_line(data.decode("utf-8", "replace").strip())
    return text if len(text) <= SHOWN else text[: SHOWN - 3] + "..."


class Connect:
    """One TCP connect to `host:port` and, with `path`, an HTTP/1.0 GET of it.

    Healthy is connected (tcp), or a 2xx or 3xx status line (http). `done(ok, text)`
    says how it went: the status line, or what failed.
    """

    __slots__ = ("_done", "_http", "_loop", "_out", "_received", "_sock", "_timer", "where")

    def __init__(self, loop: Loop, host: str, port: int, timeout: float,
                 done: Callable[[bool, str], None], path: str | None = None):
        self._loop = loop
        self._done: Callable[[bool, str], None] | None = done
        self.where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self._out = b"" if path is None else (
            f"GET {path} HTTP/1.0\r\nHost: {self.where}\r\nUser-Agent: roost\r\n"
            "Connection: close\r\n\r\n").encode("ascii")
        self._http = path is not None
        self._received = b""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._timer: Timer | None = None
        self._sock: socket.socket | None = None
        try:
            self._sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            self._sock.setblocking(False)
            err = self._sock.connect_ex((host, port))
        except OSError as exc:  # out of descriptors, or of memory
            err = exc.errno or errno.EIO
        if self._sock is not None and err in (0, errno.EINPROGRESS):
            loop.watch(self._sock.fileno(), WRITE, self._writable)
            self._timer = loop.call_later(
                timeout, lambda: self._finish(False, f"no answer within {timeout:g}s"))
        else:
            # Reported from the loop, as every outcome is: never before the caller holds us.
            self._timer = loop.call_later(0, lambda: self._finish(False, self._failed(err)))

    def _failed(self, err: int) -> str:
        return f"connect to {self.where}: {os.strerror(err)}"

    def _writable(self, _events: int) -> None:
        sock = self._sock
        assert sock is not None  # watched only while open
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self._finish(False, self._failed(err))
        elif not self._http:
            self._finish(True, f"connected to {self.where}")
        else:
            try:
                self._out = self._out[sock.send(self._out):]
            except BlockingIOError:
                return
            except OSError as exc:
                self._finish(False, f"{self.where}: {exc.strerror}")
                return
            if not self._out:  # the request is out: from now on, the answer
                self._loop.watch(sock.fileno(), READ, self._readable)

    def _readable(self, _events: int) -> None:
        sock = self._sock
        assert sock is not None  # watched only while open
        try:
            data = sock.recv(MAX_RESPONSE - len(self._received))
        except BlockingIOError:
            return
        except OSError as exc:
            self._finish(False, f"{self.where}: {exc.strerror}")
            return
        self._received += data
        line, newline, _ = self._received.partition(b"\n")
        if newline or not data or len(self._received) >= MAX_RESPONSE:
            self._finish(*status(line, bool(newline)))

    def _finish(self, ok: bool, text: str) -> None:
        done, self._done = self._done, None
        self.cancel()
        if done is not None:
            done(ok, text)

    def cancel(self) -> None:
        """Give up without reporting; safe to call twice."""
        self._done = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._sock is not None:
            self._loop.unwatch(self._sock.fileno())
            self._sock.close()
            self._sock = None


def status(line: bytes, whole: bool) -> tuple[bool, str]:
    """An HTTP status line judged (healthy: 2xx or 3xx), and what to show of it."""
    if not line.strip():
        return False, "closed without an answer"
    parts = line.split(None, 2)
    if whole and len(parts) >= 2 and parts[0].startswith(b"HTTP/") and parts[1].isdigit() \
            and len(parts[1]) == 3:
        return 200 <= int(parts[1]) < 400, shown(line)
    return False, f"not an HTTP status line: {shown(line)}"


def file_ready(path: str, owners: Collection[int]) -> bool:
    """Whether `path` exists as an entry one of `owners` made (not followed if a symlink).

    Anyone may create a file in a shared directory: only the service's own user, or
    root, can say the service is ready.
    """
    try:
        return os.lstat(path).st_uid in owners
    except OSError:
        return False


class Poll:
    """Tries a `file:` or `tcp:` readiness until it holds, then calls `on_ready()` once.

    The start timeout (the machine's) bounds it; cancel() ends it when the start is over.
    """

    __slots__ = ("_connect", "_delay", "_loop", "_on_ready", "_owners", "_ready", "_timer",
                 "tries")

    def __init__(self, loop: Loop, ready: str, owners: Collection[int],
                 on_ready: Callable[[], None]):
        self._loop = loop
        self._ready = ready
        self._owners = owners
        self._on_ready = on_ready
        self._delay = FIRST
        self._connect: Connect | None = None
        self._timer: Timer | None = loop.call_later(FIRST, self._try)
        self.tries = 0

    def _try(self) -> None:
        self._timer = None
        self.tries += 1
        kind, _, rest = self._ready.partition(":")
        if kind == "tcp":
            host, port = split_address(rest)
            self._connect = Connect(self._loop, host, port, LAST, self._connected)
        elif file_ready(rest, self._owners):
            self._on_ready()
        else:
            self._again()

    def _connected(self, ok: bool, _text: str) -> None:
        self._connect = None
        if ok:
            self._on_ready()
        else:
            self._again()

    def _again(self) -> None:
        self._delay = min(self._delay * 2, LAST)
        self._timer = self._loop.call_later(self._delay, self._try)

    def cancel(self) -> None:
        """Stop trying; safe to call twice."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._connect is not None:
            self._connect.cancel()
            self._connect = None


MAX_OUTPUT = 4096  # of a probe command's output, the last bytes are kept to show
# Reads of what a probe left in its pipe once it exited: a pipe's capacity (64 KiB). What
# it started may write on; that is not waited for.
PIPE_READS = 16


class CommandProbe:
    """A probe command: its process, its output pipe, and its deadline."""

    __slots__ = ("_loop", "child", "output", "read_fd", "timed_out", "timer")

    def __init__(self, loop: Loop, child: Child, read_fd: int):
        self._loop = loop
        self.child = child
        self.read_fd = read_fd
        self.output = b""
        self.timed_out = False
        self.timer: Timer | None = None
        os.set_blocking(read_fd, False)
        loop.watch(read_fd, READ, lambda _ev: self.read())

    def read(self) -> None:
        """Take one read of the pipe, keeping the last MAX_OUTPUT bytes; close it at EOF.

        One per event: a probe that writes without end does not hold the reactor.
        """
        if self.read_fd < 0:
            return
        try:
            data = os.read(self.read_fd, MAX_OUTPUT)
        except BlockingIOError:
            return
        if not data:
            self._close_pipe()
            return
        self.output = (self.output + data)[-MAX_OUTPUT:]

    def _close_pipe(self) -> None:
        if self.read_fd >= 0:
            self._loop.unwatch(self.read_fd)
            os.close(self.read_fd)
            self.read_fd = -1

    def finished(self) -> None:
        """Its process was reaped: what is left of its output (a pipeful), then nothing held."""
        for _ in range(PIPE_READS):
            self.read()
        self._close_pipe()
        if self.timer is not None:
            self.timer.cancel()
        self.child.close()

    def cancel(self) -> None:
        """Kill it and whatever it started (its own process group); the reaper still reaps it."""
        self.child.signal_group(_signal.SIGKILL)
        self._close_pipe()
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
