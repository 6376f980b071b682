"""The interface each means offers the tracker: membership, placement, emptiness, kill.

A means tracks the services the tracker gives it (`names`). The tracker does what is
common to every means (pidfds, signalling rounds, the main process, waits) and asks
its means for everything else; it never asks which means it holds.
"""

from __future__ import annotations

import os

from roost.kernel import proc

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from roost.core.model import ServiceConfig
    from roost.kernel.loop import Loop, Timer
    from roost.kernel.proc import ProcStat

CGROUP = "cgroup"
CONNECTOR = "proc-connector"
LINEAGE = "lineage"
MEANS = (CGROUP, CONNECTOR, LINEAGE)


class Unplaced(Exception):
    """A means cannot take a service (its cgroup could not be made): the text says why."""


class Wait:
    """Someone waits for a service to empty: the descriptors and timer that wake the check."""

    __slots__ = ("callback", "fds", "timer")

    def __init__(self, callback: Callable[[], None]):
        self.callback = callback
        self.fds: list[int] = []
        self.timer: Timer | None = None

    def release(self, loop: Loop) -> None:
        """Cancel the timer and close every descriptor (unwatched first, always)."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        for fd in self.fds:
            loop.unwatch(fd)
            os.close(fd)
        self.fds = []


class Means:
    """One way of knowing which processes belong to which service.

    A subclass gives `name` and the three membership queries (`pids`, `owns`,
    `service_of`); every other method does nothing where the means needs nothing.
    """

    name = ""

    def __init__(self) -> None:
        self.names: set[str] = set()
        # True where `close` undoes something roost must not leave behind at exit.
        self.needs_close = False

    def describe(self) -> str:
        """The means in words, for the start-up message."""
        return self.name

    # -- placement and bookkeeping --------------------------------------------------

    def place(self, config: ServiceConfig) -> str | None:
        """Get the service ready to be started: its cgroup path, or None; Unplaced if it cannot."""
        return None

    def take(self, name: str) -> None:
        """`name` is tracked by this means from now on."""
        self.names.add(name)

    def started(self, name: str, pid: int, st: ProcStat | None, forking: bool) -> None:
        """A new instance of `name` was spawned as `pid` (`st` as read just after)."""

    def exited(self, name: str, born: int) -> None:
        """A process roost spawned for `name`, born at `born`, exited."""

    def settled(self, name: str) -> None:
        """A forking service's main process is known."""

    def forget(self, name: str) -> None:
        """Drop everything known about `name`."""
        self.names.discard(name)

    def close(self) -> None:
        """Release what this means holds (sockets, cgroups roost made)."""

    # -- membership ----------------------------------------------------------------

    def pids(self, name: str, table: dict[int, ProcStat] | None = None,
             fresh: bool = True) -> list[int]:
        """The PIDs of `name` (maybe zombies); with `fresh` False, this turn's view will do."""
        raise NotImplementedError

    def owns(self, name: str, pid: int) -> bool:
        """True if `pid` is in `name` as far as this means knows now (after `sync`)."""
        raise NotImplementedError

    def service_of(self, pid: int, table: dict[int, ProcStat] | None = None) -> str | None:
        """The service `pid` belongs to, if this means knows it."""
        raise NotImplementedError

    def sync(self) -> None:
        """Bring membership up to date with what the kernel has queued."""

    def holds(self, name: str, pid: int) -> bool:
        """True if `pid` is in `name` now: the check after a pidfd for it was opened."""
        self.sync()
        return self.owns(name, pid)

    def members(self, name: str, table: dict[int, ProcStat] | None = None,
                fresh: bool = True) -> list[ProcStat]:
        """The live processes of `name` (zombies excluded)."""
        found = []
        for pid in self.pids(name, table, fresh):
            st = table.get(pid) if table is not None else None
            if st is None:
                st = proc.stat(pid)
            if st is not None and st.state != "Z":
                found.append(st)
        return found

    def pins(self, name: str) -> list[tuple[int, int]]:
        """(pid, pidfd) for every live member, each verified after it was opened."""
        opened = []
        for pid in self.pids(name):
            try:
                opened.append((pid, os.pidfd_open(pid)))
            except OSError:
                continue
        self.sync()
        out = []
        for pid, fd in opened:
            if self.owns(name, pid):
                out.append((pid, fd))
            else:
                os.close(fd)
        return out

    def cgroup_of(self, name: str) -> str | None:
        """The service's cgroup directory, when it has one."""
        return None

    def kill(self, name: str) -> bool:
        """SIGKILL all of `name` at once, atomically; False where this means cannot."""
        return False

    # -- emptiness ---------------------------------------------------------------

    def arm(self, name: str, wait: Wait, check: Callable[[], None]) -> bool:
        """Before the first check: have `check` called when `name` may have emptied.

        False if that cannot be arranged (the tracker then checks at once).
        """
        return True

    def rearm(self, name: str, wait: Wait, check: Callable[[], None]) -> None:
        """A check found members left: have `check` called again when that may change."""

    def empty(self, name: str) -> bool:
        """True if `name` has no live process left."""
        return not self.members(name, fresh=False)
