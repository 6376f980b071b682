"""The floor: membership from the process tree, refreshed by /proc scans.

Used where roost can make no cgroup and the proc connector is silent (a PID
namespace without a writable cgroup2). A scan starts from what the previous scan
knew (PIDs pinned by their start time, so a recycled PID is never taken for a
member), adds every process in a session or process group the service owns, and
then every descendant of those. A session or group id stays the service's while
any process is in it: Linux does not hand out a PID that is still in use as a
session or group id, so such an id cannot have been recycled under roost.

What it cannot see: a process that setsid()s and whose parent dies between two
scans comes home to roost with no visible link to its service. So roost scans at
adoption time: when a process it spawned exits, the unclaimed processes that came
home to roost and were born after it are that service's (its children, re-parented
as it died). While a forking service is starting, roost also claims such adoptees
for it if no other forking service was starting at the time. Anything else is
reported as an orphan of unknown origin.

`Lineage` is the scan; `LineageMeans` is the means the tracker uses, with the scan
shared by a turn of the reactor and pidfds that make waits event-driven.
"""

from __future__ import annotations

import os

from roost.kernel import proc
from roost.kernel.loop import READ
from roost.tracking.means import LINEAGE, Means

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from roost.kernel.loop import Loop
    from roost.kernel.proc import ProcStat
    from roost.tracking.means import Wait

# The floor re-checks a service it waits on at this interval when it could not pin a
# member with a pidfd (pidfds make the wait event-driven otherwise).
LINEAGE_POLL = 0.05
# At most this many members are pinned to wait on a service.
LINEAGE_PINS = 64


class Lineage:
    """Membership of every service by ancestry, sessions and process groups."""

    def __init__(self, me: int):
        self.me = me
        self.own_ids = {os.getsid(0), os.getpgid(0)}
        # name -> pid -> start time of every process seen in the service
        self.known: dict[str, dict[int, int]] = {}
        # name -> session and process-group ids owned by the service
        self.ids: dict[str, set[int]] = {}
        # name -> start time of the launcher, while a forking service is starting
        self.windows: dict[str, int] = {}
        # name -> start time of a spawned process that just exited: claim its orphans.
        self.claims: dict[str, int] = {}
        # Services with a live (not zombie) process at the last scan.
        self.live: set[str] = set()

    def started(self, name: str, pid: int, claim: bool = False) -> None:
        """A new instance of `name` runs as `pid`, which is (or will be) a session leader."""
        st = proc.stat(pid)
        self.known[name] = {pid: st.starttime} if st is not None else {}
        # The child calls setsid() itself, maybe not yet: its session will be its PID.
        self.ids[name] = {pid}
        if claim and st is not None:
            self.windows[name] = st.starttime
        else:
            self.windows.pop(name, None)

    def claim(self, name: str, since: int) -> None:
        """A process `name` spawned (born at `since`) exited: its orphans are the service's."""
        self.claims[name] = since

    def settled(self, name: str) -> None:
        """A forking service found its main process: stop claiming orphans for it."""
        self.windows.pop(name, None)

    def forget(self, name: str) -> None:
        """Drop everything known about `name`."""
        self.known.pop(name, None)
        self.ids.pop(name, None)
        self.windows.pop(name, None)
        self.claims.pop(name, None)

    def scan(self, table: dict[int, ProcStat] | None = None) -> dict[int, str]:
        """Map every process of every service to its service (zombies included).

        One pass over the table: each member found brings its children and the
        members of its session and process group, until nothing new turns up.
        """
        table = proc.snapshot() if table is None else table
        children: dict[int, list[ProcStat]] = {}
        by_id: dict[int, list[ProcStat]] = {}
        for st in table.values():
            children.setdefault(st.ppid, []).append(st)
            by_id.setdefault(st.sid, []).append(st)
            if st.pgid != st.sid:
                by_id.setdefault(st.pgid, []).append(st)
        owner: dict[int, str] = {}
        id_owner: dict[int, str] = {}
        queue: list[ProcStat] = []

        def take(st: ProcStat, name: str) -> None:
            if st.pid not in owner:
                owner[st.pid] = name
                queue.append(st)

        def take_id(ident: int, name: str) -> None:
            if ident not in id_owner and ident not in self.own_ids:
                id_owner[ident] = name
                for st in by_id.get(ident, ()):
                    take(st, name)

        def settle() -> None:
            while queue:
                st = queue.pop()
                name = owner[st.pid]
                for child in children.get(st.pid, ()):
                    take(child, name)
                take_id(st.sid, name)
                take_id(st.pgid, name)

        for name, known in self.known.items():
            for pid, start in known.items():
                seen = table.get(pid)
                if seen is not None and seen.starttime == start:
                    take(seen, name)
        settle()
        for name, ids in self.ids.items():
            for ident in ids:
                leader = table.get(ident)
                # A live leader of this id that is not ours means the number was
                # recycled after the service's last process in it was gone.
                if leader is not None and owner.get(ident) != name and (
                        ident in (leader.sid, leader.pgid)):
                    continue
                take_id(ident, name)
        settle()
        claims, self.claims = self.claims, {}
        windows = list(self.windows.items()) if len(self.windows) == 1 else []
        for name, since in [*claims.items(), *windows]:
            for st in table.values():
                if st.pid not in owner and st.ppid == self.me and st.starttime >= since:
                    take(st, name)
            settle()
        for name in self.known:
            self.known[name] = {}
            self.ids[name] = set()
        self.live = set()
        for pid, name in owner.items():
            if table[pid].state != "Z":
                self.live.add(name)
            if name in self.known:
                self.known[name][pid] = table[pid].starttime
        for ident, name in id_owner.items():
            if ident in by_id and name in self.ids:
                self.ids[name].add(ident)
        return owner


class LineageMeans(Means):
    """Tracking by lineage: the floor, for when no cgroup and no connector can be had."""

    name = LINEAGE

    def __init__(self, loop: Loop, me: int, came_home: Callable[[int], bool]):
        """`came_home(born)` says if a child roost did not spawn, born since, is alive."""
        super().__init__()
        self._loop = loop
        self._came_home = came_home
        self.lineage = Lineage(me)
        # (turn of the reactor, the table scanned or None for /proc, the map it gave)
        self._cache: tuple[int, dict[int, ProcStat] | None, dict[int, str]] | None = None

    def started(self, name: str, pid: int, st: ProcStat | None, forking: bool) -> None:
        """Pin the new instance as the service's first member, session and group."""
        self.lineage.started(name, pid, claim=forking)
        self._cache = None

    def exited(self, name: str, born: int) -> None:
        """Claim for `name` what came home to roost as its spawned process died."""
        # Only a child of roost that roost did not spawn, born after this one, can have
        # come home with it: without one, there is nothing to claim (and no scan to pay).
        if self._came_home(born):
            self.lineage.claim(name, born)
            self.scan()

    def settled(self, name: str) -> None:
        """Stop claiming orphans for a forking service whose main process is known."""
        self.lineage.settled(name)

    def forget(self, name: str) -> None:
        """Drop everything known about `name`."""
        super().forget(name)
        self.lineage.forget(name)

    def scan(self, table: dict[int, ProcStat] | None = None,
             fresh: bool = True) -> dict[int, str]:
        """The lineage map; with `fresh` False, at most one scan per turn of the reactor.

        Signal rounds and emptiness checks take the turn's scan (a turn that stops a
        thousand services reads /proc once, not a thousand times); every decision
        (membership of a PID, the main process, leftovers) scans afresh. A table
        given again in the same turn gives the same map: it is not scanned twice.
        """
        turn = self._loop.polls
        cache = self._cache
        if cache is not None and cache[0] == turn and (
                table is cache[1] if table is not None else not fresh):
            return cache[2]
        owner = self.lineage.scan(table)
        self._cache = (turn, table, owner)
        return owner

    def pids(self, name: str, table: dict[int, ProcStat] | None = None,
             fresh: bool = True) -> list[int]:
        """The processes the scan gives `name`."""
        cache = self._cache
        if table is None and cache is not None and cache[0] == self._loop.polls \
                and name not in self.lineage.live:
            # Nobody of the service earlier in this turn: nobody since either, as only a
            # live member can fork a new one. Only a non-empty answer must be fresh.
            return []
        owner = self.scan(table, fresh=fresh)
        return [p for p, n in owner.items() if n == name]

    def owns(self, name: str, pid: int) -> bool:
        """True if a fresh scan gives `pid` to `name`."""
        return self.scan().get(pid) == name

    def service_of(self, pid: int, table: dict[int, ProcStat] | None = None) -> str | None:
        """The service a scan gives `pid` to; no scan while no service is tracked so."""
        if not self.names:
            return None
        return self.scan(table).get(pid)

    def pins(self, name: str) -> list[tuple[int, int]]:
        """A pidfd on each member of this turn's scan, verified by its start time."""
        out = []
        for st in self.members(name, fresh=False):
            fd = proc.pin(st)
            if fd is not None:
                out.append((st.pid, fd))
        return out

    def rearm(self, name: str, wait: Wait, check: Callable[[], None]) -> None:
        """Wait on the members' pidfds, or poll when none could be pinned."""
        wait.release(self._loop)
        pinned = self.pins(name)
        for _pid, fd in pinned[LINEAGE_PINS:]:
            os.close(fd)
        for _pid, fd in pinned[:LINEAGE_PINS]:
            wait.fds.append(fd)
            self._loop.watch(fd, READ, lambda _events: check())
        if not wait.fds:
            wait.timer = self._loop.call_later(LINEAGE_POLL, check)
