"""roost's own messages, and every line roost writes to its console.

No `logging` (tens of milliseconds to import) and no buffering while the console keeps
up: a message written just before PID 1 hands the machine to reboot(2) must already be
on the console. A console that stops reading must never stop roost, though, so no write
here blocks:

- Each console fd is written through an open file description of roost's own, opened
  again through /proc/self/fd with O_NONBLOCK. Setting O_NONBLOCK on the inherited one
  would set it for everyone who shares it: the shell, `roost run`'s main command.
  A regular file is written as it is (it never blocks, and a second description would
  keep an offset of its own); where no reopening is possible (a socket, no /proc) a
  write goes out only when poll(2) says it fits, at most PIPE_BUF bytes at a time.
- Once a reactor is bound (`bind`, done by the first service log), what the console
  cannot take at once waits in a bounded buffer the reactor flushes when the fd is
  writable. A line that does not fit is dropped and counted, and one line,
  "roost: N lines dropped (console could not keep up)", follows once it drains.
- Before that, and in `roost run`, a write waits for the console at most PLAIN_WAIT
  seconds; a console that made it wait is stalled, and later lines are dropped at once,
  counted the same way, until it takes a line again.
"""

import posix
import time

_fd = 2
_timestamps = False
_verbose = False

BUFFER_BYTES = 256 * 1024  # per console fd, once a reactor flushes it
PLAIN_WAIT = 1.0  # the longest a write waits for a console when no reactor runs
_PIPE_BUF = 4096  # a pipe write this small fits whole once poll(2) says POLLOUT
_EPOLLOUT = 4  # select.EPOLLOUT, without importing select for a constant

_loop = None  # the reactor that flushes the buffers, once bound
_outs: "dict[int, _Out]" = {}


def configure(fd: "int | None" = None, timestamps: "bool | None" = None,
              verbose: "bool | None" = None) -> None:
    """Choose where messages go, whether they carry a timestamp, and whether debug shows."""
    global _fd, _timestamps, _verbose
    if fd is not None:
        _fd = fd
    if timestamps is not None:
        _timestamps = timestamps
    if verbose is not None:
        _verbose = verbose


def verbose() -> bool:
    """True when debug messages are shown (`-v`)."""
    return _verbose


def stamp(wall: "float | None" = None) -> str:
    """Format a wall-clock time as local ISO 8601 with milliseconds."""
    wall = time.time() if wall is None else wall
    millis = int(wall * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(wall)) + f".{millis:03d}"


def _line(message: str) -> bytes:
    line = f"{stamp()} roost: {message}\n" if _timestamps else f"roost: {message}\n"
    return line.encode("utf-8", "replace")


def say(message: str) -> None:
    """Write one message line; never raises, never blocks (the console may be gone)."""
    write(_fd, _line(message))


def debug(message: str) -> None:
    """Write a message only in verbose mode."""
    if _verbose:
        say(message)


def error_trace(context: str) -> None:
    """Report the exception being handled, with its traceback; never raises."""
    try:
        import traceback  # noqa: PLC0415 - lazy (memory): only when something went wrong

        say(f"error in {context}:\n{traceback.format_exc().rstrip()}")
    except BaseException:  # noqa: BLE001 - reporting must not become the failure
        say(f"error in {context} (traceback unavailable)")


def write(fd: int, data: bytes) -> None:
    """Write whole lines to console fd `fd` without blocking; what cannot go is counted."""
    out = _outs.get(fd)
    if out is None:
        out = _outs[fd] = _Out(fd)
    try:
        out.write(data)
    except OSError:
        pass  # the console is gone (EPIPE, EIO): nothing is left to tell


def dropped() -> int:
    """Console lines dropped since start, on every fd."""
    return sum(out.total for out in _outs.values())


def bind(loop: object) -> None:
    """Let the reactor `loop` flush console buffers (a `kernel.loop.Loop`)."""
    global _loop
    if _loop is None:
        import atexit  # noqa: PLC0415 - lazy (start-up): only a roost with a reactor

        atexit.register(_drain, PLAIN_WAIT)
    _loop = loop


def attach(path: str = "/dev/console") -> bool:
    """Put the console on fds 0, 1 and 2 (PID 1 of a machine); False if it cannot be opened."""
    try:
        fd = posix.open(path, posix.O_RDWR | posix.O_NOCTTY)
    except OSError:
        return False
    for out in list(_outs.values()):
        out.forget()
    _outs.clear()
    for target in (0, 1, 2):
        if fd != target:
            posix.dup2(fd, target, inheritable=True)
    if fd > 2:
        posix.close(fd)
    return True


def _drain(timeout: float) -> None:
    """Give buffered console output up to `timeout` seconds to go out (at exit)."""
    deadline = time.monotonic() + timeout
    for out in list(_outs.values()):
        try:
            out.flush(0)
            if out.pending:
                out.wait(deadline - time.monotonic())
        except OSError:
            pass


class _Out:
    """One console fd: a non-blocking way to write it, what waits, what was dropped."""

    __slots__ = ("fd", "guarded", "pending", "stalled", "total", "unreported", "watched",
                 "wfd")

    def __init__(self, fd: int):
        self.fd = fd
        self.wfd, self.guarded = _private(fd)
        self.pending = bytearray()
        self.unreported = 0  # dropped since the last notice
        self.total = 0
        self.stalled = False
        self.watched = False

    def write(self, data: bytes) -> None:
        if self.pending:
            self.flush(0)
        if not self.pending:
            rest = self._send(data)
            if not rest:
                self.stalled = False
                if self.unreported:
                    self._notice()
                return
            if _loop is None:
                self._plain(rest)
                return
            data = rest
        if _loop is None or len(self.pending) + len(data) > BUFFER_BYTES:
            self._drop(data)
        else:
            self.pending += data
            self._watch()

    def _plain(self, rest: bytes) -> None:
        """No reactor: wait a little, once, then drop and call the console stalled."""
        if not self.stalled:
            self.pending += rest
            self.wait(PLAIN_WAIT)
            if not self.pending:
                return
            rest, self.pending = bytes(self.pending), bytearray()
        self.stalled = True
        self._drop(rest)

    def wait(self, timeout: float) -> None:
        """Write what is pending, polling for room for up to `timeout` seconds."""
        import select  # noqa: PLC0415 - lazy (start-up): only for a console that is full

        poller = select.poll()
        poller.register(self.wfd, select.POLLOUT)
        deadline = time.monotonic() + timeout
        while self.pending:
            left = deadline - time.monotonic()
            if left <= 0 or not poller.poll(left * 1000):
                return
            self.flush(0)

    def _drop(self, data: bytes) -> None:
        lines = data.count(b"\n") or 1
        self.unreported += lines
        self.total += lines

    def _notice(self) -> None:
        count, self.unreported = self.unreported, 0
        rest = self._send(_line(f"{count} lines dropped (console could not keep up)"))
        if rest:
            self.pending += rest
            self._watch()

    def _send(self, data: bytes) -> bytes:
        """Write what the fd takes now; return the rest."""
        view = memoryview(data)
        while view:
            if self.guarded and not _room(self.wfd):
                break
            try:
                written = posix.write(self.wfd, view[:_PIPE_BUF] if self.guarded else view)
            except BlockingIOError:
                break
            except InterruptedError:
                continue
            view = view[written:]
        return bytes(view)

    def flush(self, _events: int) -> None:
        """Write what waits (the reactor calls this when the fd is writable)."""
        if self.pending:
            rest = self._send(bytes(self.pending))
            self.pending = bytearray(rest)
        if not self.pending:
            self.stalled = False
            if self.unreported:
                self._notice()
        if not self.pending and self.watched:
            self._unwatch()

    def _watch(self) -> None:
        if self.watched or _loop is None:
            return
        try:
            _loop.watch(self.wfd, _EPOLLOUT, self.flush)  # type: ignore[attr-defined]
            self.watched = True
        except OSError:
            # epoll refuses this kind of file: try again shortly instead.
            self.watched = True
            _loop.call_later(0.05, self._retry)  # type: ignore[attr-defined]

    def _retry(self) -> None:
        self.watched = False
        self.flush(0)
        if self.pending:
            self._watch()

    def _unwatch(self) -> None:
        self.watched = False
        if _loop is not None:
            _loop.unwatch(self.wfd)  # type: ignore[attr-defined]

    def forget(self) -> None:
        """Stop using this fd (it is about to be replaced): unwatch, then close ours."""
        if self.watched:
            self._unwatch()
        if self.wfd != self.fd:
            try:
                posix.close(self.wfd)
            except OSError:
                pass


def _private(fd: int) -> "tuple[int, bool]":
    """A descriptor that writes `fd` without blocking, and whether it needs poll first."""
    try:
        mode = posix.fstat(fd).st_mode
    except OSError:
        return fd, False  # closed: every write fails, and is let go
    if mode & 0o170000 == 0o100000:  # S_IFREG
        return fd, False
    try:
        return posix.open(f"/proc/self/fd/{fd}",
                       posix.O_WRONLY | posix.O_NONBLOCK | posix.O_NOCTTY | posix.O_CLOEXEC), False
    except OSError:
        return fd, True


def _room(fd: int) -> bool:
    import select  # noqa: PLC0415 - lazy (start-up): only where no reopening was possible

    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return bool(poller.poll(0))
