"""The log directory: reached from /, one component at a time, trusting only roost and root.

Service output is written, rotated and read relative to a descriptor of this directory.
On the way to it, a symlink is followed only if root or roost made it, and a directory
someone else could change (rename a log file, plant a link in its place) is refused:
any uid that could write there could aim roost's writes at a file of its choosing.
"""

from __future__ import annotations

import errno
import os
import stat

_MAX_LINKS = 40  # symlinks followed reaching a log directory, as the kernel's own limit
_DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class LogDirRefused(ValueError):
    """A log directory roost will not write in, and why."""


def open_directory(path: str, euid: int) -> int:
    """An O_PATH descriptor of the log directory `path`, or LogDirRefused saying why.

    It is walked to from /, one component at a time, each directory checked. An
    ancestor passes if root or roost owns it and others may not write in it (or only
    with the sticky bit set, where nobody may rename what is not theirs); the log
    directory itself must be roost's own, writable by neither group nor others unless
    sticky. A symlink is followed only if root or roost made it; a missing directory is
    created 0750.
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
