"""Service output to the machine's syslog socket: one datagram per line, never waiting.

The socket is a datagram socket connected to the daemon's (/dev/log by default), and
it never blocks: the syslog daemon may be one of roost's own services, and a daemon
that is slow, stopped or not yet started must cost a line, never a turn of PID 1's
loop. A line the socket does not take is dropped and counted; roost says so on its
console once per outage, and once more, with the count, when lines go out again.
After a failed connect roost tries again at most once a second, not at every line.

Whoever listens on the socket reads every service's output, so roost sends only to a
socket root or roost owns, in directories no other user can write in (the ready
file's rule): in a directory others may write in, any user could bind the path
first, or again once the daemon removed its socket, and be sent everything.

Each message is what syslog(3) sends: `<PRI>Mmm dd hh:mm:ss TAG: TEXT`, the tag being
the service's name. No pid: a service's processes share one pipe, and roost cannot
tell which of them wrote a line. A line that begins with a level prefix such as `<3>`
(sd-daemon(3)'s convention) gets that severity, the prefix left out of the message.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
import time

from roost.core.model import SYSLOG_FACILITIES, SYSLOG_PATH
from roost.kernel import console
from roost.kernel.ready import Refused, check_directory

INFO = 6  # a line of standard output
ERR = 3  # a line of standard error, as docker's syslog driver marks it
RETRY = 1.0  # seconds between connects to a socket that refused
# RFC 3164's month names, not the C library's %b, which follows the locale.
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun",
           "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def message(facility: int, severity: int, tag: str, text: str, when: float) -> bytes:
    """One syslog(3) datagram; a leading `<N>` in `text` (N 0-7) chooses the severity."""
    if len(text) >= 3 and text[0] == "<" and text[2] == ">" and "0" <= text[1] <= "7":
        severity, text = int(text[1]), text[3:]
    t = time.localtime(when)
    stamp = f"{_MONTHS[t.tm_mon - 1]} {t.tm_mday:2d} {t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
    return f"<{facility * 8 + severity}>{stamp} {tag}: {text}".encode("utf-8", "replace")


def trusted(path: str) -> str:
    """The real path of the socket at `path`; Refused unless only root or roost control it."""
    real = os.path.realpath(path)
    check_directory(os.path.dirname(real))
    info = os.lstat(real)
    if not stat.S_ISSOCK(info.st_mode):
        raise Refused(f"{real} is not a socket")
    if info.st_uid not in (0, os.geteuid()):
        raise Refused(f"{real} is owned by uid {info.st_uid}, neither root nor roost")
    return real


class Syslog:
    """The connection to the syslog socket at `path`, shared by every service's log."""

    __slots__ = ("_retry_at", "_sock", "_why", "facility", "lost", "path")

    def __init__(self, path: str = SYSLOG_PATH, facility: str = "daemon"):
        self.path = path
        self.facility = SYSLOG_FACILITIES[facility]
        self.lost = 0  # lines dropped since the socket last took one
        self._why = ""
        self._sock: socket.socket | None = None
        self._retry_at = 0.0

    def send(self, tag: str, stderr: bool, texts: list[str], when: float) -> None:
        """Send each line (info, or err for `stderr`); drop and count what it will not take."""
        severity = ERR if stderr else INFO
        for index, text in enumerate(texts):
            if not self._send(message(self.facility, severity, tag, text, when)):
                self._lose(len(texts) - index)
                return
        if self.lost:
            console.say(f"syslog {self.path}: taking lines again; {self.lost} dropped")
            self.lost = 0

    def _send(self, data: bytes) -> bool:
        for attempt in (1, 2):
            if self._sock is None and not self._connect():
                return False
            assert self._sock is not None
            try:
                self._sock.send(data)
                return True
            except BlockingIOError:
                self._why = "the daemon is not keeping up"
                return False
            except OSError as exc:
                # A daemon that restarted made a new socket at the path: connect again, once.
                self._why = exc.strerror or "error"
                self.close()
                if attempt == 2 or exc.errno not in (errno.ECONNREFUSED, errno.ENOTCONN,
                                                     errno.ENOENT):
                    return False
        return False

    def _connect(self) -> bool:
        now = time.monotonic()
        if now < self._retry_at:
            return False
        sock = socket.socket(socket.AF_UNIX,
                             socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
        try:
            sock.connect(trusted(self.path))
        except (OSError, Refused) as exc:
            sock.close()
            self._why = (exc.strerror if isinstance(exc, OSError) else str(exc)) or "error"
            self._retry_at = now + RETRY
            return False
        self._sock = sock
        return True

    def _lose(self, lines: int) -> None:
        if not self.lost:
            console.say(f"syslog {self.path}: lines dropped ({self._why})")
        self.lost += lines

    def close(self) -> None:
        """Close the socket; the next line connects again."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
