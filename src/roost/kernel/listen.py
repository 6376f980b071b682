"""The sockets and FIFOs roost opens for a service to be handed at its start (socket activation).

Opened in roost, not in the service: they exist before the service's first start and
outlive its restarts, so a client that connects while the service is down waits in the
listen queue instead of being refused. A file-system socket or FIFO is made in a
directory only root, roost or the service's own user controls, and only a stale socket
(or FIFO) of the same kind is replaced there: roost never unlinks a file of another kind
a path happens to name.
"""

from __future__ import annotations

import os
import socket
import stat

from roost.kernel.ready import Refused, check_directory

_INET = {"tcp": (socket.AF_INET, socket.SOCK_STREAM),
         "tcp6": (socket.AF_INET6, socket.SOCK_STREAM),
         "udp": (socket.AF_INET, socket.SOCK_DGRAM),
         "udp6": (socket.AF_INET6, socket.SOCK_DGRAM)}


def open_inet(kind: str, host: str, port: int, backlog: int) -> int:
    """A bound (and, for TCP, listening) IP socket; its descriptor, close-on-exec in roost."""
    family, kind_of = _INET[kind]
    sock = socket.socket(family, kind_of | socket.SOCK_CLOEXEC)
    try:
        # A restarted roost must be able to listen again at once: a previous listener's
        # connections in TIME_WAIT would hold the port for a minute.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
        if kind_of == socket.SOCK_STREAM:
            sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock.detach()


def open_unix(path: str, mode: int, uid: int, gid: int, backlog: int) -> int:
    """A listening stream socket at `path` ("@name": abstract), owned by uid:gid with `mode`."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        if path.startswith("@"):
            sock.bind("\0" + path[1:])
        else:
            _make_room(path, stat.S_ISSOCK, uid)
            # The mode from the first instant: a chmod after bind would leave a moment in
            # which anyone may connect.
            old = os.umask(0o777 & ~mode)
            try:
                sock.bind(path)
            finally:
                os.umask(old)
            os.chown(path, uid, gid, follow_symlinks=False)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock.detach()


def open_fifo(path: str, mode: int, uid: int, gid: int) -> int:
    """A FIFO at `path`, opened for reading and writing (so it never reads end-of-file)."""
    _make_room(path, stat.S_ISFIFO, uid)
    old = os.umask(0o777 & ~mode)
    try:
        os.mkfifo(path, mode)
    except FileExistsError:
        pass  # kept: _make_room left only a FIFO there
    finally:
        os.umask(old)
    fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            raise Refused(f"{path}: not a FIFO")
        os.fchown(fd, uid, gid)
        os.fchmod(fd, mode)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def still_there(path: str, fd: int) -> bool:
    """Whether `path` still names the socket or FIFO `fd` is.

    A runtime directory removed at a stop takes the file with it.
    """
    if path.startswith("@"):
        return True
    try:
        named, held = os.lstat(path), os.fstat(fd)
    except OSError:
        return False
    if stat.S_ISFIFO(held.st_mode):
        return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)
    # A socket's descriptor is of sockfs, not of the file bind() made: what can be compared
    # is that a socket is there, and that this one was bound to the path.
    if not stat.S_ISSOCK(named.st_mode):
        return False
    with socket.socket(fileno=os.dup(fd)) as sock:
        return bool(sock.getsockname() == path)


def _make_room(path: str, same_kind: object, uid: int) -> None:
    """Check (or make) `path`'s directory; remove a stale file of the kind about to be made."""
    directory = os.path.dirname(path)
    existing = directory
    while not os.path.lexists(existing):
        existing = os.path.dirname(existing)
    try:
        real = os.path.realpath(existing, strict=True)
    except OSError as exc:
        raise Refused(f"{existing}: {exc.strerror}") from None
    if existing != directory:
        # The service's runtime directory is made only at its start, after roost listens:
        # roost makes the missing part (root's, 0755; the start takes the last one over),
        # below directories only root and roost control, so no link can be swapped in.
        check_directory(real)
        os.makedirs(directory, 0o755, exist_ok=True)
        real = os.path.realpath(directory, strict=True)
    check_directory(real, also=uid)
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not same_kind(info.st_mode):  # type: ignore[operator]
        what = "FIFO" if same_kind is stat.S_ISFIFO else "socket"
        raise Refused(f"{path} exists and is not a {what}")
    if same_kind is stat.S_ISSOCK:
        os.unlink(path)
