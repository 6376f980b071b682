"""roost's own messages: one line each, written straight to a file descriptor.

No `logging` (tens of milliseconds to import) and no buffering: a message written
just before PID 1 hands the machine to reboot(2) must already be on the console.
"""

import os
import time

_fd = 2
_timestamps = False
_verbose = False


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


def say(message: str) -> None:
    """Write one message line; never raises (the console may be gone)."""
    line = f"{stamp()} roost: {message}\n" if _timestamps else f"roost: {message}\n"
    data = line.encode("utf-8", "replace")
    try:
        while data:
            data = data[os.write(_fd, data) :]
    except OSError:
        pass


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


def attach(path: str = "/dev/console") -> bool:
    """Put the console on fds 0, 1 and 2 (PID 1 of a machine); False if it cannot be opened."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
    except OSError:
        return False
    for target in (0, 1, 2):
        if fd != target:
            os.dup2(fd, target, inheritable=True)
    if fd > 2:
        os.close(fd)
    return True
