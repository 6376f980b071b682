"""Service output: one pipe per service, held by roost across restarts.

roost keeps both ends of each service's pipe for as long as the service is
configured, so a restarting service writes into the same pipe and no line is
lost between two instances, and the reader never sees EOF. Lines are stamped on
arrival and go to a size-rotated file, to the console, to a small in-memory
tail for `roost log`, and to any client following the log.
"""

from __future__ import annotations

import collections
import os
import time

from roost.kernel import console
from roost.kernel.loop import READ

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from roost.kernel.loop import Loop

MAX_LINE = 16 * 1024  # a longer line is cut into pieces of this size
TAIL_LINES = 200  # lines kept in memory per service that has written any


class LogSettings:
    """Where service output goes."""

    __slots__ = ("console", "console_fd", "directory", "keep", "max_bytes")

    def __init__(self, directory: str | None = None, max_bytes: int = 1 << 20, keep: int = 3,
                 console: bool = True, console_fd: int = 1):
        self.directory = directory
        self.max_bytes = max_bytes
        self.keep = keep
        self.console = console
        self.console_fd = console_fd


class ServiceLog:
    """The output pipe of one service, and where its lines go."""

    __slots__ = ("_file", "_partial", "_size", "followers", "name", "read_fd", "settings",
                 "tail", "write_fd")

    def __init__(self, name: str, settings: LogSettings):
        self.name = name
        self.settings = settings
        read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
        os.set_blocking(read_fd, False)
        self.read_fd = read_fd
        self.write_fd = write_fd
        self._partial = b""
        self._file = -1
        self._size = 0
        self.tail: collections.deque[tuple[float, str]] | None = None
        self.followers: list[Callable[[str, float, str], None]] = []

    def attach(self, loop: Loop) -> None:
        """Start reading the pipe in `loop`."""
        loop.watch(self.read_fd, READ, self._readable)

    def _readable(self, _events: int) -> None:
        chunks = []
        while True:
            try:
                data = os.read(self.read_fd, 65536)
            except BlockingIOError:
                break
            if not data:
                break
            chunks.append(data)
            if len(data) < 65536:
                break
        if not chunks:
            return
        now = time.time()
        data = self._partial + b"".join(chunks)
        lines = data.split(b"\n")
        self._partial = lines.pop()
        while len(self._partial) > MAX_LINE:
            lines.append(self._partial[:MAX_LINE])
            self._partial = self._partial[MAX_LINE:]
        for line in lines:
            self.emit(line.decode("utf-8", "replace"), now)

    def settle(self) -> None:
        """The service's processes are all gone: read what they left, end their last line.

        Otherwise an unfinished line of a crashed instance would be joined to the first
        line of the next one.
        """
        if self.read_fd >= 0:
            self._readable(0)
        self.flush()

    def flush(self) -> None:
        """Emit a final line without newline (when the service is removed)."""
        if self._partial:
            self.emit(self._partial.decode("utf-8", "replace"), time.time())
            self._partial = b""

    def emit(self, text: str, when: float) -> None:
        """Deliver one line to every destination."""
        stamp = console.stamp(when)
        if self.tail is None:
            self.tail = collections.deque(maxlen=TAIL_LINES)
        self.tail.append((when, text))
        if self.settings.directory:
            self._write_file(f"{stamp} {text}\n".encode("utf-8", "replace"))
        if self.settings.console:
            _write_all(self.settings.console_fd,
                       f"{stamp} {self.name} | {text}\n".encode("utf-8", "replace"))
        for follower in list(self.followers):
            follower(self.name, when, text)

    # -- files ---------------------------------------------------------------

    @property
    def path(self) -> str | None:
        """The current log file, if logging to files."""
        if not self.settings.directory:
            return None
        return os.path.join(self.settings.directory, f"{self.name}.log")

    def _write_file(self, data: bytes) -> None:
        path = self.path
        assert path is not None
        if self._file < 0:
            try:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                self._file = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                                     0o640)
                self._size = os.fstat(self._file).st_size
            except OSError as exc:
                console.say(f"{self.name}: cannot open log {path}: {exc.strerror}")
                return
        if self._size + len(data) > self.settings.max_bytes and self._size > 0:
            self._rotate(path)
        if self._file >= 0 and _write_all(self._file, data):
            self._size += len(data)

    def _rotate(self, path: str) -> None:
        os.close(self._file)
        self._file = -1
        keep = self.settings.keep
        try:
            for index in range(keep - 1, 0, -1):
                older = f"{path}.{index}"
                if os.path.exists(older):
                    os.replace(older, f"{path}.{index + 1}")
            os.replace(path, f"{path}.1")
            self._file = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                                 0o640)
            self._size = 0
        except OSError as exc:
            console.say(f"{self.name}: cannot rotate log {path}: {exc.strerror}")

    def close_file(self) -> None:
        """Close the log file (reopened on the next line): at shutdown, or when settings change."""
        if self._file >= 0:
            os.close(self._file)
            self._file = -1

    def read_tail(self, count: int) -> list[tuple[float, str]]:
        """The last `count` lines: from memory, or from the files when memory has fewer."""
        lines = list(self.tail or ())[-count:] if count > 0 else []
        if len(lines) >= count or not self.settings.directory:
            return lines
        from_files = _file_tail(self.path or "", count, self.settings.keep)
        return from_files if len(from_files) > len(lines) else lines

    def close(self, loop: Loop) -> None:
        """Stop reading and release the pipe and the file."""
        self.flush()
        loop.unwatch(self.read_fd)
        for fd in (self.read_fd, self.write_fd):
            os.close(fd)
        self.read_fd = self.write_fd = -1
        self.close_file()


def _write_all(fd: int, data: bytes) -> bool:
    try:
        while data:
            data = data[os.write(fd, data) :]
    except OSError:
        return False
    return True


def _file_tail(path: str, count: int, keep: int) -> list[tuple[float, str]]:
    """Read the last `count` lines across a log file and its rotated predecessors."""
    collected: list[str] = []
    for candidate in [path, *(f"{path}.{i}" for i in range(1, keep + 1))]:
        try:
            with open(candidate, "rb") as f:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                f.seek(max(0, size - 256 * 1024))
                text = f.read().decode("utf-8", "replace")
        except OSError:
            break
        lines = text.splitlines()
        if size > 256 * 1024 and lines:
            lines = lines[1:]  # the first line was cut by the seek
        collected = lines + collected
        if len(collected) >= count:
            break
    result = []
    for line in collected[-count:]:
        stamp, _, text = line.partition(" ")
        try:
            when = time.mktime(time.strptime(stamp.split(".")[0], "%Y-%m-%dT%H:%M:%S"))
        except ValueError:
            when, text = 0.0, line
        result.append((when, text))
    return result
