"""A service's own directories (runtime, state, cache, logs, configuration), made safely.

Each is a path below a base roost trusts (/run, /var/lib, ... as systemd has them),
walked one component at a time through directory descriptors: a component that is a
symbolic link, or not a directory, or owned by anyone but root or the service's user,
stops the walk, so a link planted by another user cannot make roost chown or delete
somewhere else. Components on the way are made 0755 and root's (or are the
service's own); the last is the service's, with its mode.
"""

from __future__ import annotations

import os
import stat

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class Refused(OSError):
    """A component of the path is not what roost may create in or hand over."""


def make(base: str, relative: str, uid: int, gid: int, mode: int) -> str:
    """Make (or take over) `base/relative` for the service; return its path."""
    fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    parts = relative.split("/")
    try:
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            try:
                os.mkdir(part, mode if last else 0o755, dir_fd=fd)
            except FileExistsError:
                pass
            try:
                child = os.open(part, _DIR, dir_fd=fd)
            except OSError as exc:
                raise Refused(f"{os.path.join(base, *parts[:index + 1])}: not a directory "
                              f"roost may use ({os.strerror(exc.errno or 0)})") from None
            os.close(fd)
            fd = child
            info = os.fstat(fd)
            if info.st_uid not in (0, uid):
                raise Refused(f"{os.path.join(base, *parts[:index + 1])}: owned by uid "
                              f"{info.st_uid}, not by root or the service's user")
            if last:
                os.fchown(fd, uid, gid)
                os.fchmod(fd, mode)
            elif stat.S_IMODE(info.st_mode) & (0o022 if info.st_uid == 0 else 0o002):
                # The service may own a directory above another of its own (app, app/sub);
                # nobody else may write there, where a link could be swapped in.
                raise Refused(f"{os.path.join(base, *parts[:index + 1])}: others may write "
                              "in it")
    finally:
        os.close(fd)
    return os.path.join(base, relative)


def remove(base: str, relative: str) -> None:
    """Remove `base/relative` and all in it, following no symbolic link; gone already is fine."""
    *parents, last = relative.split("/")
    try:
        fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        # A parent the service owns may have had a link swapped in: walk, never follow.
        for part in parents:
            child = os.open(part, _DIR, dir_fd=fd)
            os.close(fd)
            fd = child
        if not stat.S_ISDIR(os.stat(last, dir_fd=fd, follow_symlinks=False).st_mode):
            return  # a link or a file put in its place is not the service's directory
        # rmtree works through directory descriptors here (avoids_symlink_attacks on Linux).
        import shutil  # noqa: PLC0415 - lazy (memory): it brings zlib, lzma and fnmatch to the supervisor

        shutil.rmtree(last, dir_fd=fd, ignore_errors=True)
    except OSError:
        return  # gone, or not a directory roost may walk: nothing of the service's to remove
    finally:
        os.close(fd)
