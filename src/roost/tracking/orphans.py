"""Orphans: processes that came home to roost (its children it did not spawn).

roost is a subreaper (or PID 1): a member whose parent dies is re-parented to it.
Each is reported with the service it came from, as far as the means can tell, and
the command line it had when it arrived (an orphan may exec something else later).
"""

from __future__ import annotations

import os

from roost.kernel import proc

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from roost.kernel.loop import Loop, Timer
    from roost.kernel.proc import ProcStat


class Orphans:
    """roost's children: those it spawned, and those that came home, with their origin."""

    def __init__(self, loop: Loop, me: int,
                 service_of: Callable[[int, dict[int, ProcStat] | None], str | None]):
        """`service_of(pid, table)` names the service of a process, if any means knows it."""
        self._loop = loop
        self._me = me
        self._service_of = service_of
        self._spawned: dict[int, int] = {}  # pid -> start time of each service's first process
        # pid -> (start time, service, command line) of each child noted after its adoption
        self._adopted: dict[int, tuple[int, str | None, str]] = {}
        self._look_timer: Timer | None = None

    def spawned(self, pid: int, starttime: int) -> None:
        """Note that roost spawned `pid` (born at `starttime`): it is no orphan."""
        self._spawned[pid] = starttime

    def reaped(self, pid: int) -> int | None:
        """A process roost spawned exited: the start time it was spawned with, if known."""
        return self._spawned.pop(pid, None)

    def came_home_since(self, born: int) -> bool:
        """True if a live child of roost that roost did not spawn was born at `born` or later."""
        for child in children(self._me):
            if child in self._spawned:
                continue
            st = proc.stat(child)
            if st is not None and st.starttime >= born and st.state != "Z":
                return True
        return False

    def expect(self) -> None:
        """A member exited: its children are coming home; note them in the next turn."""
        if self._look_timer is None:
            self._look_timer = self._loop.call_later(0, self._look_for_adoptees)

    def _look_for_adoptees(self) -> None:
        """Note the command line of every newly adopted child while it is fresh."""
        self._look_timer = None
        for pid in children(self._me):
            if pid in self._adopted or pid in self._spawned:
                continue
            st = proc.stat(pid)
            if st is None or st.state == "Z" or st.ppid != self._me:
                continue
            self._adopted[pid] = (st.starttime, self._service_of(pid, None),
                                  proc.cmdline(pid) or f"[{st.comm}]")

    def report(self, table: dict[int, ProcStat] | None = None) -> list[dict[str, object]]:
        """Every orphan: its pid, the service it came from (None if unknown), its command.

        The command line is the one first seen after its adoption.
        """
        table = proc.snapshot() if table is None else table
        found: list[dict[str, object]] = []
        alive: set[int] = set()
        for st in table.values():
            if st.ppid != self._me or st.state == "Z" or st.pid == self._me:
                continue
            if self._spawned.get(st.pid) == st.starttime:
                continue
            alive.add(st.pid)
            seen = self._adopted.get(st.pid)
            if seen is None or seen[0] != st.starttime:
                seen = (st.starttime, self._service_of(st.pid, table),
                        proc.cmdline(st.pid) or f"[{st.comm}]")
                self._adopted[st.pid] = seen
            found.append({"pid": st.pid, "service": seen[1], "command": seen[2]})
        for pid in [p for p in self._adopted if p not in alive]:
            del self._adopted[pid]
        for pid in [p for p in self._spawned if p not in table]:
            del self._spawned[pid]
        return found


def children(pid: int) -> list[int]:
    """The children of a process, from /proc/PID/task/*/children (cheap: no full scan)."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                found.extend(int(p) for p in f.read().split())
        except OSError:
            continue
    return found
