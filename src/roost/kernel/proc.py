"""Reading processes from /proc, and pinning one with a pidfd before acting on it.

A PID read from /proc can be reused between the read and the signal. The
pattern used everywhere: read the process's start time, open a pidfd, read the
start time again; if it is unchanged the pidfd names the process we read, and
every later signal through it is immune to reuse.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator


class ProcStat:
    """The fields of /proc/PID/stat that roost needs."""

    __slots__ = ("comm", "pgid", "pid", "ppid", "sid", "starttime", "state")

    def __init__(self, pid: int, comm: str, state: str, ppid: int, pgid: int, sid: int,
                 starttime: int):
        self.pid = pid
        self.comm = comm
        self.state = state
        self.ppid = ppid
        self.pgid = pgid
        self.sid = sid
        self.starttime = starttime


def stat(pid: int, root: str = "/proc") -> ProcStat | None:
    """Parse /proc/PID/stat, or None if the process is gone."""
    try:
        with open(f"{root}/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # comm may hold spaces and parentheses: it ends at the last ')'.
    open_paren = data.index(b"(")
    close_paren = data.rindex(b")")
    comm = data[open_paren + 1 : close_paren].decode("utf-8", "replace")
    fields = data[close_paren + 2 :].split()
    return ProcStat(pid, comm, fields[0].decode(), int(fields[1]), int(fields[2]),
                    int(fields[3]), int(fields[19]))


def pids(root: str = "/proc") -> Iterator[int]:
    """Every PID visible in /proc."""
    for entry in os.listdir(root):
        if entry.isdigit():
            yield int(entry)


def snapshot(root: str = "/proc") -> dict[int, ProcStat]:
    """Stat every visible process."""
    table = {}
    for pid in pids(root):
        st = stat(pid, root)
        if st is not None:
            table[pid] = st
    return table


def descendants(ancestor: int, table: dict[int, ProcStat] | None = None) -> list[ProcStat]:
    """Every process whose parent chain leads to `ancestor`, parents before children."""
    table = snapshot() if table is None else table
    children: dict[int, list[ProcStat]] = {}
    for st in table.values():
        children.setdefault(st.ppid, []).append(st)
    found: list[ProcStat] = []
    queue = [ancestor]
    while queue:
        for child in children.get(queue.pop(), ()):
            if child.pid != ancestor:
                found.append(child)
                queue.append(child.pid)
    return found


def cmdline(pid: int) -> str:
    """The command line of a process as one string ('' for kernel threads or the gone)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return ""
    return " ".join(part.decode("utf-8", "replace") for part in raw.rstrip(b"\0").split(b"\0"))


def pin(st: ProcStat) -> int | None:
    """Open a pidfd for the process `st` describes, or None if that process is gone."""
    try:
        fd = os.pidfd_open(st.pid)
    except OSError:
        return None
    again = stat(st.pid)
    if again is None or again.starttime != st.starttime:
        os.close(fd)
        return None
    return fd


def has_capability(number: int) -> bool:
    """Whether roost holds capability `number` in its effective set (/proc/self/status CapEff)."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"CapEff:"):
                    return bool(int(line.split()[1], 16) >> number & 1)
    except OSError:
        pass
    return False
