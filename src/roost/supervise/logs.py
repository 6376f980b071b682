"""Service output: two pipes per service, held by roost across restarts.

roost keeps both ends of each service's pipes for as long as the service is
configured, so a restarting service writes into the same pipes and no line is
lost between two instances, and the reader never sees EOF. Standard output and
standard error have a pipe each (one, shared, with `stderr = "stdout"`), so every
line is known to be of one stream or the other. Lines are stamped on arrival and
go to a size-rotated file, to the console, to a small in-memory tail for
`roost log`, to any client following the log, and to syslog if configured.
A new run of a service is marked in its log by a line of roost's own, saying how
the run before it ended.

Each reactor turn reads at most READ_BUDGET bytes of one pipe: a service that
floods cannot delay another's lines, or a control reply, by more than a turn.

Log files are opened, rotated and read relative to a descriptor of the log
directory (kernel/logdir.py); a directory someone else could change under roost is
refused, and no service starts that would log there.
A line the file cannot take (a full disk) is counted, shown by `roost status`,
and one line in the file says how many were lost once it takes lines again.
A file line is `STAMP STREAM TEXT`, STREAM being `out`, `err` or `roost`.
"""

from __future__ import annotations

import collections
import errno
import os
import stat
import time

from roost.kernel import console
from roost.kernel.logdir import LogDirRefused, open_directory
from roost.kernel.loop import READ

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from roost.kernel.loop import Loop
    from roost.kernel.syslog import Syslog

    Follower = Callable[[str, float, str, str], None]

MAX_LINE = 16 * 1024  # a longer line is cut into pieces of this size
TAIL_LINES = 200  # lines kept in memory per service that has written any
READ_BUDGET = 16 * 1024  # bytes read from one pipe per reactor turn: a few ms of work

# The streams a line can be of: the service's standard output or error, or roost's own
# word in its log (a new run, lines a full disk lost).
OUT, ERR, ROOST = "out", "err", "roost"
STREAMS = (OUT, ERR, ROOST)
_CONSOLE_MARK = {OUT: "|", ERR: "!"}

# O_NONBLOCK: a FIFO planted under the log file's name must not hang the open.
_FILE_FLAGS = (os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK
               | os.O_CLOEXEC)


class LogSettings:
    """Where service output goes."""

    __slots__ = ("_refused", "console", "console_fd", "directory", "keep", "max_bytes",
                 "syslog")

    def __init__(self, directory: str | None = None, max_bytes: int = 1 << 20, keep: int = 3,
                 console: bool = True, console_fd: int = 1, syslog: Syslog | None = None):
        self.directory = directory
        self.max_bytes = max_bytes
        self.keep = keep
        self.console = console
        self.console_fd = console_fd
        self.syslog = syslog
        self._refused: str | None = None

    def open_directory(self) -> int:
        """An O_PATH descriptor of the log directory, created if missing; or LogDirRefused."""
        assert self.directory
        try:
            fd = open_directory(self.directory, os.geteuid())
        except LogDirRefused as exc:
            self._refuse(str(exc))
            raise
        except OSError as exc:
            message = f"log directory {self.directory}: {exc.strerror}"
            self._refuse(message)
            raise LogDirRefused(message) from None
        self._refused = None
        return fd

    def _refuse(self, message: str) -> None:
        if message != self._refused:
            console.say(f"{message}; no service that logs there starts")
            self._refused = message


class ServiceLog:
    """The output pipes of one service, and where their lines go."""

    __slots__ = ("_err_partial", "_err_write", "_file", "_followers", "_loop", "_partial",
                 "_size", "_torn", "_unwritten", "_why", "_write_fd", "err_fd", "lost", "name",
                 "ran", "read_fd", "settings", "tail")

    def __init__(self, name: str, settings: LogSettings):
        self.name = name
        self.settings = settings
        read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
        os.set_blocking(read_fd, False)
        self.read_fd = read_fd
        self._write_fd = write_fd
        # The standard error pipe, made at the first start that wants one.
        self.err_fd = self._err_write = -1
        self._loop: Loop | None = None
        self._partial = self._err_partial = b""
        self._file = -1
        self._size = 0
        self.lost = 0  # lines the log file never got, since roost started
        self._unwritten = 0  # of those, lost since the file last said so
        self._why = ""  # what lost them: an errno name
        self._torn = False  # the file ends inside a line a failed write cut
        self.ran = False  # a run of the service has begun: the next one is marked
        self.tail: collections.deque[tuple[float, str, str]] | None = None
        # `roost log -f` clients; a list only while one follows (memory, at 1000 services).
        self._followers: list[Follower] | None = None

    def follow(self, follower: Follower) -> None:
        """Call `follower(name, when, stream, text)` with every line from now on."""
        if self._followers is None:
            self._followers = []
        self._followers.append(follower)

    def unfollow(self, follower: Follower) -> None:
        """No more lines to `follower`; nothing if it was not following."""
        if self._followers is not None and follower in self._followers:
            self._followers.remove(follower)
            if not self._followers:
                self._followers = None

    def fds(self, merged: bool) -> tuple[int, int]:
        """The write ends a start gives the service as its stdout and stderr.

        `merged` (`stderr = "stdout"`): one pipe for both, so their lines keep the order
        they were written in. Raises LogDirRefused when the log directory is refused: a
        service must not start whose output would go there (a failure to start).
        """
        if self.settings.directory:
            os.close(self.settings.open_directory())
        if merged:
            return self._write_fd, self._write_fd
        if self._err_write < 0:
            err_fd, self._err_write = os.pipe2(os.O_CLOEXEC)
            os.set_blocking(err_fd, False)
            self.err_fd = err_fd
            if self._loop is not None:
                self._loop.watch(err_fd, READ, self._err_readable)
        return self._write_fd, self._err_write

    def attach(self, loop: Loop) -> None:
        """Start reading the pipes in `loop`, which also flushes the console from now on."""
        console.bind(loop)
        self._loop = loop
        loop.watch(self.read_fd, READ, self._readable)
        if self.err_fd >= 0:
            loop.watch(self.err_fd, READ, self._err_readable)

    def _readable(self, _events: int) -> None:
        self._read(OUT, READ_BUDGET)

    def _err_readable(self, _events: int) -> None:
        self._read(ERR, READ_BUDGET)

    def _read(self, stream: str, budget: int | None) -> None:
        """Read up to `budget` bytes (None: all there is) and deliver the complete lines."""
        fd = self.read_fd if stream == OUT else self.err_fd
        chunks = []
        while budget is None or budget > 0:
            want = 65536 if budget is None else budget
            try:
                data = os.read(fd, want)
            except BlockingIOError:
                break
            if not data:
                break
            chunks.append(data)
            if budget is not None:
                budget -= len(data)
            if len(data) < want:
                break
        if not chunks:
            return
        now = time.time()
        partial = self._partial if stream == OUT else self._err_partial
        complete, newline, partial = (partial + b"".join(chunks)).rpartition(b"\n")
        texts = complete.decode("utf-8", "replace").split("\n") if newline else []
        while len(partial) > MAX_LINE:
            texts.append(partial[:MAX_LINE].decode("utf-8", "replace"))
            partial = partial[MAX_LINE:]
        if stream == OUT:
            self._partial = partial
        else:
            self._err_partial = partial
        if texts:
            self._deliver(texts, now, stream)

    def settle(self) -> None:
        """The service's processes are all gone: read what they left, end their last lines.

        Otherwise an unfinished line of a crashed instance would be joined to the first
        line of the next one.
        """
        if self.read_fd >= 0:
            self._read(OUT, None)
        if self.err_fd >= 0:
            self._read(ERR, None)
        self.flush()

    def flush(self) -> None:
        """Emit final lines without newline (when the service is removed)."""
        for stream in (OUT, ERR):
            partial = self._partial if stream == OUT else self._err_partial
            if partial:
                self._deliver([partial.decode("utf-8", "replace")], time.time(), stream)
        self._partial = self._err_partial = b""

    def emit(self, text: str, when: float, stream: str = OUT) -> None:
        """Deliver one line to every destination."""
        self._deliver([text], when, stream)

    def begin_run(self, ended: str) -> None:
        """A run of the service begins; after another, mark it with how that one `ended`."""
        if self.ran:
            self.emit(f"-- {self.name} restarted: {ended} --", time.time(), ROOST)
        self.ran = True

    def _deliver(self, texts: list[str], when: float, stream: str) -> None:
        stamp = console.stamp(when)
        if self.tail is None:
            self.tail = collections.deque(maxlen=TAIL_LINES)
        self.tail.extend((when, stream, text) for text in texts)
        settings = self.settings
        if settings.directory:
            self._write_file("".join(f"{stamp} {stream} {text}\n" for text in texts)
                             .encode("utf-8", "replace"))
        if stream != ROOST:
            # roost's own lines are its console's already, said by the supervisor.
            if settings.console:
                mark = _CONSOLE_MARK[stream]
                console.write(settings.console_fd,
                              "".join(f"{stamp} {self.name} {mark} {text}\n" for text in texts)
                              .encode("utf-8", "replace"))
            if settings.syslog is not None:
                settings.syslog.send(self.name, stream == ERR, texts, when)
        if self._followers is not None:
            for follower in list(self._followers):
                for text in texts:
                    follower(self.name, when, stream, text)

    # -- files ---------------------------------------------------------------

    @property
    def path(self) -> str | None:
        """The current log file, if logging to files."""
        if not self.settings.directory:
            return None
        return os.path.join(self.settings.directory, f"{self.name}.log")

    def _write_file(self, data: bytes) -> None:
        """Append whole lines, rotating before a file would pass its size; count what fails."""
        if self._file < 0 and not self._open(None):
            self._lose(data)
            return
        limit = self.settings.max_bytes
        while data:
            room = limit - self._size
            cut = len(data) if len(data) <= room else data.rfind(b"\n", 0, room) + 1
            if cut == 0:
                if self._size > 0:
                    if not self._rotate():
                        self._lose(data)
                        return
                    continue
                cut = data.find(b"\n") + 1 or len(data)  # one line longer than a file
            self._append(data[:cut])
            data = data[cut:]

    def _append(self, data: bytes) -> None:
        """Write `data`, after the note of what was lost if the file can take lines again."""
        head = b"\n" if self._torn else b""
        if self._unwritten:
            head += console.stamp().encode() + \
                f" {ROOST} {self._unwritten} lines dropped ({self._why})\n".encode()
        payload = head + data
        written = 0
        try:
            while written < len(payload):
                written += os.write(self._file, payload[written:])
        except OSError as exc:
            self._why = errno.errorcode.get(exc.errno or 0, "error")
        self._size += written
        if written == len(payload):
            self._torn = False
            self._unwritten = 0
            return
        if written:
            # Cut inside a line: the next write must end it first. A write of nothing
            # leaves the file as it was, torn or not.
            self._torn = payload[written - 1:written] != b"\n"
        if written >= len(head):
            self._unwritten = 0
            data = data[written - len(head):]  # every line whose newline did not go out
        self._lose(data)

    def _lose(self, data: bytes) -> None:
        lines = data.count(b"\n")
        if lines and not self._unwritten:
            console.say(f"{self.name}: log file {self.path}: lines dropped ({self._why})")
        self.lost += lines
        self._unwritten += lines

    def _open(self, directory: int | None) -> bool:
        """Open NAME.log in the log directory: only a regular file of roost's own."""
        assert self.path is not None
        dir_fd = directory
        try:
            if dir_fd is None:
                dir_fd = self.settings.open_directory()
            fd = os.open(f"{self.name}.log", _FILE_FLAGS, 0o640, dir_fd=dir_fd)
        except LogDirRefused:
            self._why = "log directory refused"
            return False
        except OSError as exc:
            self._fail("cannot open", exc)
            return False
        finally:
            if directory is None and dir_fd is not None:
                os.close(dir_fd)
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid() or info.st_nlink != 1:
            os.close(fd)
            self._why = "not roost's file"
            console.say(f"{self.name}: refusing log file {self.path}: not a regular file of "
                        f"uid {os.geteuid()} with one link (owner {info.st_uid}, "
                        f"{info.st_nlink} links)")
            return False
        self._file = fd
        self._size = info.st_size
        return True

    def _fail(self, what: str, exc: OSError) -> None:
        why = errno.errorcode.get(exc.errno or 0, "error")
        if why != self._why or not self._unwritten:
            console.say(f"{self.name}: {what} log {self.path}: {exc.strerror}")
        self._why = why

    def _rotate(self) -> bool:
        """NAME.log becomes NAME.log.1, and so on up to `keep`; a new NAME.log is opened."""
        self.close_file()
        name = f"{self.name}.log"
        try:
            dir_fd = self.settings.open_directory()
        except LogDirRefused:
            self._why = "log directory refused"
            return False
        try:
            for index in range(self.settings.keep - 1, 0, -1):
                try:
                    os.replace(f"{name}.{index}", f"{name}.{index + 1}",
                               src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
                except FileNotFoundError:
                    pass
            os.replace(name, f"{name}.1", src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except OSError as exc:
            self._fail("cannot rotate", exc)
        try:
            return self._open(dir_fd)
        finally:
            os.close(dir_fd)

    def close_file(self) -> None:
        """Close the log file (reopened on the next line): at shutdown, or when settings change."""
        if self._file >= 0:
            os.close(self._file)
            self._file = -1

    def read_tail(self, count: int) -> list[tuple[float, str, str]]:
        """The last `count` lines: from memory, or from the files when memory has fewer."""
        lines = list(self.tail or ())[-count:] if count > 0 else []
        if len(lines) >= count or not self.settings.directory:
            return lines
        try:
            dir_fd = self.settings.open_directory()
        except LogDirRefused:
            return lines
        try:
            from_files = _file_tail(dir_fd, f"{self.name}.log", count, self.settings.keep)
        finally:
            os.close(dir_fd)
        return from_files if len(from_files) > len(lines) else lines

    def close(self, loop: Loop) -> None:
        """Stop reading and release the pipes and the file."""
        self.flush()
        for fd in (self.read_fd, self.err_fd):
            if fd >= 0:
                loop.unwatch(fd)
        for fd in (self.read_fd, self._write_fd, self.err_fd, self._err_write):
            if fd >= 0:
                os.close(fd)
        self.read_fd = self._write_fd = self.err_fd = self._err_write = -1
        self.close_file()


def _file_tail(dir_fd: int, name: str, count: int, keep: int) -> list[tuple[float, str, str]]:
    """Read the last `count` lines across a log file and its rotated predecessors."""
    collected: list[str] = []
    for candidate in [name, *(f"{name}.{i}" for i in range(1, keep + 1))]:
        try:
            fd = os.open(candidate, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                         dir_fd=dir_fd)
        except OSError:
            break
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                break
            size = info.st_size
            data = os.pread(fd, 256 * 1024, max(0, size - 256 * 1024))
        finally:
            os.close(fd)
        lines = data.decode("utf-8", "replace").splitlines()
        if size > 256 * 1024 and lines:
            lines = lines[1:]  # the first line was cut by the seek
        collected = lines + collected
        if len(collected) >= count:
            break
    result = []
    for line in collected[-count:]:
        stamp, _, rest = line.partition(" ")
        stream, _, text = rest.partition(" ")
        if stream not in STREAMS:
            stream, text = OUT, rest  # written before lines named their stream
        try:
            when = time.mktime(time.strptime(stamp.split(".")[0], "%Y-%m-%dT%H:%M:%S"))
        except ValueError:
            when, stream, text = 0.0, OUT, line
        result.append((when, stream, text))
    return result
