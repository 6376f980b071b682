"""roost's own readiness, told outward: a datagram, a newline on a descriptor, a file.

- `notify(address, text)`: one sd_notify datagram to the $NOTIFY_SOCKET roost was
  given (a path, or `@name` for the abstract namespace), never blocking: a manager
  that does not read must not stop roost.
- `ready_fd(n)`: the s6 convention: roost writes a newline to descriptor N once
  ready, and closes it. Checked before anything starts.
- `ReadyFile`: a file that exists exactly while roost says it is ready, what a
  container's HEALTHCHECK or a Kubernetes exec probe tests. Created whole (written
  under another name, then renamed), removed when roost is no longer ready. Its
  directory must be one no other uid controls: anyone who may create a name in it
  could plant the file and make a probe pass. So the directory must be root's or
  roost's and writable by no one else (sticky is not enough here), and each
  directory above it must be root's or roost's, writable by others only if sticky.

Imported only when one of these is asked for: the container path without them does
not load it (tests/ns/test_run_startup.py).
"""

import os
import stat

from roost.kernel import console

_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class Refused(Exception):
    """A readiness target roost will not use; the message says why, in one line."""


def notify(address: str, text: str) -> bool:
    """Send `text` as one datagram to `address`; False (said once per run) if it failed."""
    import socket  # noqa: PLC0415 - lazy (start-up): only for a roost given $NOTIFY_SOCKET

    global _failed
    target = "\0" + address[1:] if address.startswith("@") else address
    try:
        with socket.socket(socket.AF_UNIX,
                           socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK) as s:
            s.sendto(text.encode(), target)
    except OSError as exc:
        if not _failed:
            # Once: a manager gone away must not fill the console with one line per change.
            what = text.split("\n", 1)[0]
            console.say(f"cannot notify {address} ({what}): {exc.strerror or exc}")
        _failed = True
        return False
    return True


_failed = False


def ready_fd(text: str) -> int:
    """The descriptor `--ready-fd` names, checked: open for writing, not 0-2; made private.

    Raise Refused saying what is wrong with it.
    """
    import fcntl  # noqa: PLC0415 - lazy (start-up): --ready-fd only

    digits = text.strip()
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 9:
        raise Refused(f"--ready-fd: not a descriptor number: {text!r}")
    fd = int(digits)
    if fd < 3:
        raise Refused(f"--ready-fd {fd}: 0, 1 and 2 are roost's stdin, stdout and stderr")
    try:
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    except OSError:
        raise Refused(f"--ready-fd {fd}: not an open descriptor") from None
    if flags & os.O_ACCMODE == os.O_RDONLY:
        raise Refused(f"--ready-fd {fd}: open for reading only")
    # Addressed to roost: no service may inherit it and hold the reader's EOF back.
    os.set_inheritable(fd, False)
    return fd


def signal_fd(fd: int) -> None:
    """Write the one newline to a --ready-fd descriptor, then close it."""
    try:
        os.set_blocking(fd, False)
        os.write(fd, b"\n")
    except OSError as exc:
        console.say(f"--ready-fd {fd}: cannot write: {exc.strerror}")
    finally:
        os.close(fd)


def close_fd(fd: int) -> None:
    """Close a --ready-fd descriptor with no newline: roost will not be ready."""
    try:
        os.close(fd)
    except OSError:
        pass


def check_directory(directory: str, also: int | None = None) -> None:
    """Refuse a directory to make a file in that another uid controls (the module docstring).

    `also`: a uid that may own the directories besides root and roost (a service's own).
    """
    uid = os.geteuid()
    owners = {0, uid} if also is None else {0, uid, also}
    chain = ["/"]
    for part in directory.split("/"):
        if part:
            chain.append(os.path.join(chain[-1], part))
    for where in chain:
        st = os.lstat(where)
        mode = stat.S_IMODE(st.st_mode)
        last = where is chain[-1]
        if not stat.S_ISDIR(st.st_mode):
            raise Refused(f"{where} is not a directory")
        if st.st_uid not in owners:
            raise Refused(f"{where} is owned by uid {st.st_uid}, neither root nor roost"
                          + ("" if also is None else " nor the service"))
        if mode & 0o022 and (last or not mode & stat.S_ISVTX):
            raise Refused(f"{where} has mode {mode:04o}: another user could "
                          + ("create the file" if last else "replace what is in it"))


class ReadyFile:
    """A file that exists while roost is ready; `set(True/False)` creates or removes it."""

    __slots__ = ("_dir", "_temp", "_text", "name", "path", "present")

    def __init__(self, path: str):
        """Check the place, remove a stale file; raise Refused saying why it is unusable."""
        path = os.path.abspath(path)
        directory, name = os.path.split(path)
        if not name:
            raise Refused(f"--ready-file {path}: names a directory, not a file")
        try:
            real = os.path.realpath(directory, strict=True)
        except OSError as exc:
            raise Refused(f"--ready-file {path}: {directory}: {exc.strerror}") from None
        try:
            check_directory(real)
            self._dir = os.open(real, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except Refused as exc:
            raise Refused(f"--ready-file {path}: {exc}") from None
        except OSError as exc:
            raise Refused(f"--ready-file {path}: {real}: {exc.strerror}") from None
        opened, checked = os.fstat(self._dir), os.lstat(real)
        if (opened.st_dev, opened.st_ino) != (checked.st_dev, checked.st_ino):
            os.close(self._dir)
            raise Refused(f"--ready-file {path}: {real} changed while it was checked")
        self.path = path
        self.name = name
        self._temp = f".{name}.{os.getpid()}.new"
        self._text = ""
        self.present = True  # unknown: whatever is there is removed now
        try:
            self.set(False, quiet=False)
        except OSError as exc:
            os.close(self._dir)
            raise Refused(f"--ready-file {path}: cannot remove what is there: "
                          f"{exc.strerror}") from None

    def set(self, ready: bool, text: str = "ready", quiet: bool = True) -> None:
        """Create the file (holding `text`) or remove it; `quiet` says a failure, not raises."""
        if ready == self.present and (not ready or text == self._text):
            return
        try:
            if ready:
                self._write(text)
            else:
                try:
                    os.unlink(self.name, dir_fd=self._dir)
                except FileNotFoundError:
                    pass
        except OSError as exc:
            if not quiet:
                raise
            console.say(f"--ready-file {self.path}: cannot {'create' if ready else 'remove'} "
                        f"it: {exc.strerror}")
            return
        self.present = ready
        self._text = text if ready else ""

    def _write(self, text: str) -> None:
        try:
            os.unlink(self._temp, dir_fd=self._dir)
        except FileNotFoundError:
            pass
        fd = os.open(self._temp, _FILE_FLAGS, 0o644, dir_fd=self._dir)
        try:
            os.write(fd, text.encode(errors="replace") + b"\n")
        finally:
            os.close(fd)
        # rename(2) is atomic: a probe sees the whole file or none.
        os.rename(self._temp, self.name, src_dir_fd=self._dir, dst_dir_fd=self._dir)

    def close(self) -> None:
        """Remove the file (roost is no longer ready) and let go of its directory."""
        if self._dir >= 0:
            self.set(False)
            os.close(self._dir)
            self._dir = -1
