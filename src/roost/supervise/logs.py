"""Service output: one pipe per service, held by roost across restarts.

roost keeps both ends of each service's pipe for as long as the service is
configured, so a restarting service writes into the same pipe and no line is
lost between two instances, and the reader never sees EOF. Lines are stamped on
arrival and go to a size-rotated file, to the console, to a small in-memory
tail for `roost log`, and to any client following the log.

Each reactor turn reads at most READ_BUDGET bytes of one pipe: a service that
floods cannot delay another's lines, or a control reply, by more than a turn.

Log files are opened, rotated and read relative to a descriptor of the log
directory, reached component by component without following a symlink anyone but
root or roost could have made, and a directory someone else could change under
roost is refused (`open_directory`): no service starts that would log there.
A line the file cannot take (a full disk) is counted, shown by `roost status`,
and one line in the file says how many were lost once it takes lines again.
"""

from __future__ import annotations

import collections
import errno
import os
import stat
import time

from roost.kernel import console
from roost.kernel.loop import READ

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from roost.kernel.loop import Loop

MAX_LINE = 16 * 1024  # a longer line is cut into pieces of this size
TAIL_LINES = 200  # lines kept in memory per service that has written any
READ_BUDGET = 16 * 1024  # bytes read from one pipe per reactor turn: a few ms of work
_MAX_LINKS = 40  # symlinks followed reaching a log directory, as the kernel's own limit

_DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: a FIFO planted under the log file's name must not hang the open.
_FILE_FLAGS = (os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK
               | os.O_CLOEXEC)


class LogDirRefused(ValueError):
    """A log directory roost will not write in, and why."""


class LogSettings:
    """Where service output goes."""

    __slots__ = ("_refused", "console", "console_fd", "directory", "keep", "max_bytes")

    def __init__(self, directory: str | None = None, max_bytes: int = 1 << 20, keep: int = 3,
                 console: bool = True, console_fd: int = 1):
        self.directory = directory
        self.max_bytes = max_bytes
        self.keep = keep
        self.console = console
        self.console_fd = console_fd
        self._refused: str | None = None

    def open_directory(self) -> int:
        """An O_PATH descriptor of the log directory, created if missing; or LogDirRefused."""
        assert self.directory
        try:
            fd = _open_directory(self.directory, os.geteuid())
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
    """The output pipe of one service, and where its lines go."""

    __slots__ = ("_file", "_partial", "_size", "_torn", "_unwritten", "_why", "_write_fd",
                 "followers", "lost", "name", "read_fd", "settings", "tail")

    def __init__(self, name: str, settings: LogSettings):
        self.name = name
        self.settings = settings
        read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
        os.set_blocking(read_fd, False)
        self.read_fd = read_fd
        self._write_fd = write_fd
        self._partial = b""
        self._file = -1
        self._size = 0
        self.lost = 0  # lines the log file never got, since roost started
        self._unwritten = 0  # of those, lost since the file last said so
        self._why = ""  # what lost them: an errno name
        self._torn = False  # the file ends inside a line a failed write cut
        self.tail: collections.deque[tuple[float, str]] | None = None
        self.followers: list[Callable[[str, float, str], None]] = []

    @property
    def write_fd(self) -> int:
        """The pipe's write end, the service's stdout and stderr.

        Raises LogDirRefused when the log directory is refused: a service must not start
        whose output would go there (the supervisor reports it as a failure to start).
        """
        if self.settings.directory:
            os.close(self.settings.open_directory())
        return self._write_fd

    def attach(self, loop: Loop) -> None:
        """Start reading the pipe in `loop`, which also flushes the console from now on."""
        console.bind(loop)
        loop.watch(self.read_fd, READ, self._readable)

    def _readable(self, _events: int) -> None:
        self._read(READ_BUDGET)

    def _read(self, budget: int | None) -> None:
        """Read up to `budget` bytes (None: all there is) and deliver the complete lines."""
        chunks = []
        while budget is None or budget > 0:
            want = 65536 if budget is None else budget
            try:
                data = os.read(self.read_fd, want)
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
        complete, newline, self._partial = (self._partial + b"".join(chunks)).rpartition(b"\n")
        texts = complete.decode("utf-8", "replace").split("\n") if newline else []
        while len(self._partial) > MAX_LINE:
            texts.append(self._partial[:MAX_LINE].decode("utf-8", "replace"))
            self._partial = self._partial[MAX_LINE:]
        if texts:
            self._deliver(texts, now)

    def settle(self) -> None:
        """The service's processes are all gone: read what they left, end their last line.

        Otherwise an unfinished line of a crashed instance would be joined to the first
        line of the next one.
        """
        if self.read_fd >= 0:
            self._read(None)
        self.flush()

    def flush(self) -> None:
        """Emit a final line without newline (when the service is removed)."""
        if self._partial:
            self.emit(self._partial.decode("utf-8", "replace"), time.time())
            self._partial = b""

    def emit(self, text: str, when: float) -> None:
        """Deliver one line to every destination."""
        self._deliver([text], when)

    def _deliver(self, texts: list[str], when: float) -> None:
        stamp = console.stamp(when)
        if self.tail is None:
            self.tail = collections.deque(maxlen=TAIL_LINES)
        self.tail.extend((when, text) for text in texts)
        if self.settings.directory:
            self._write_file("".join(f"{stamp} {text}\n" for text in texts)
                             .encode("utf-8", "replace"))
        if self.settings.console:
            console.write(self.settings.console_fd,
                          "".join(f"{stamp} {self.name} | {text}\n" for text in texts)
                          .encode("utf-8", "replace"))
        for follower in list(self.followers):
            for text in texts:
                follower(self.name, when, text)

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
                f" roost: {self._unwritten} lines dropped ({self._why})\n".encode()
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
        self._torn = written > 0
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

    def read_tail(self, count: int) -> list[tuple[float, str]]:
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
        """Stop reading and release the pipe and the file."""
        self.flush()
        loop.unwatch(self.read_fd)
        for fd in (self.read_fd, self._write_fd):
            os.close(fd)
        self.read_fd = self._write_fd = -1
        self.close_file()


def _open_directory(path: str, euid: int) -> int:
    """Walk to `path` from /, one component at a time, checking each directory on the way.

    An ancestor passes if root or roost owns it and others may not write in it (or only
    with the sticky bit set, where nobody may rename what is not theirs); the log
    directory itself must be roost's own, writable by neither group nor others unless
    sticky. A symlink is followed only if root or roost
    made it; a missing directory is created 0750.
    """
    where = "/"
    fd = os.open("/", _DIR_FLAGS)
    todo = [part for part in path.split("/") if part not in ("", ".")]
    links = 0
    try:
        _check(fd, where, path, euid, last=not todo)
        while todo:
            part = todo.pop(0)
            try:
                following = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                os.mkdir(part, 0o750, dir_fd=fd)
                following = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                target = _link(fd, part, os.path.join(where, part), path, euid)
                links += 1
                if links > _MAX_LINKS:
                    raise LogDirRefused(
                        f"log directory {path}: too many symbolic links") from None
                todo[:0] = [p for p in target.split("/") if p not in ("", ".")]
                if target.startswith("/"):
                    os.close(fd)
                    fd, where = os.open("/", _DIR_FLAGS), "/"
                continue
            os.close(fd)
            fd, where = following, os.path.normpath(os.path.join(where, part))
            _check(fd, where, path, euid, last=not todo)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _link(dir_fd: int, part: str, where: str, path: str, euid: int) -> str:
    """The target of symlink `part`, if root or roost made it; refused otherwise."""
    info = os.stat(part, dir_fd=dir_fd, follow_symlinks=False)
    if not stat.S_ISLNK(info.st_mode):
        raise LogDirRefused(f"log directory {path}: {where} is not a directory")
    if info.st_uid not in (0, euid):
        raise LogDirRefused(f"log directory {path}: {where} is a symbolic link owned by "
                            f"uid {info.st_uid}, not by root or roost (uid {euid})")
    return os.readlink(part, dir_fd=dir_fd)


def _check(fd: int, where: str, path: str, euid: int, *, last: bool) -> None:
    info = os.fstat(fd)
    owners = (euid,) if last else (0, euid)
    if info.st_uid not in owners:
        whose = "roost" if last else "root or roost"
        raise LogDirRefused(f"log directory {path}: {where} is owned by uid {info.st_uid}, "
                            f"not by {whose} (uid {euid})")
    # A group may write in an ancestor (Debian's /var/log is root:syslog 0775): the
    # administrator granted that. Nobody but roost may write in the log directory itself.
    writers = 0o022 if last else 0o002
    if info.st_mode & writers and not info.st_mode & stat.S_ISVTX:
        others = "group or others" if last else "others"
        raise LogDirRefused(f"log directory {path}: {where} is writable by {others} "
                            f"(mode {stat.S_IMODE(info.st_mode):04o}) without the sticky bit")


def _file_tail(dir_fd: int, name: str, count: int, keep: int) -> list[tuple[float, str]]:
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
        stamp, _, text = line.partition(" ")
        try:
            when = time.mktime(time.strptime(stamp.split(".")[0], "%Y-%m-%dT%H:%M:%S"))
        except ValueError:
            when, text = 0.0, line
        result.append((when, text))
    return result
