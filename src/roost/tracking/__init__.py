"""Which processes belong to which service, by the most precise means this system allows.

In order of precision (see docs/tracking.md):

  cgroup          a cgroup v2 per service; each child joins it before it execs.
                  Exact; setsid and double forks cannot leave it; emptiness is an
                  event (cgroup.events), and cgroup.kill stops a fork bomb at once.
  proc-connector  the kernel's fork and exit events, read as they are queued:
                  a pid -> service map that follows every fork. Exact, where the
                  kernel delivers events with our PIDs (not in a PID namespace).
  lineage         the process tree, sessions and process groups as /proc shows
                  them, scanned when it matters. The floor.

Every signal to a member goes through a pidfd opened and then verified to still
be that member, so a recycled PID is never signalled.
"""

from __future__ import annotations

import _signal
import os
import select

from roost import console, proc
from roost.loop import READ
from roost.tracking.cgroup import Tree
from roost.tracking.connector import EXIT, FORK, Connector, Event
from roost.tracking.lineage import Lineage

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from roost.config.model import ServiceConfig
    from roost.loop import Loop, Timer

CGROUP = "cgroup"
CONNECTOR = "proc-connector"
LINEAGE = "lineage"
MEANS = (CGROUP, CONNECTOR, LINEAGE)

# Signal rounds per request: a member may fork between the read of the members and
# its own signal; each round signals what the previous one had not seen.
ROUNDS = 16
# While a SIGKILL has not emptied a service (no cgroup.kill), how often to repeat it.
REKILL_INTERVAL = 0.1
# The lineage floor re-checks a service it waits on at this interval when it could
# not pin a member with a pidfd (pidfds make the wait event-driven otherwise).
LINEAGE_POLL = 0.05
# At most this many members are pinned to wait on a lineage service.
LINEAGE_PINS = 64

_EPOLLPRI = 0x002


class _Wait:
    """Someone waits for a service to empty."""

    __slots__ = ("callback", "fds", "timer")

    def __init__(self, callback: Callable[[], None]):
        self.callback = callback
        self.fds: list[int] = []
        self.timer: Timer | None = None


class _Main:
    """A pinned main process whose exit is watched through its pidfd."""

    __slots__ = ("fd", "pid", "starttime")

    def __init__(self, pid: int, fd: int, starttime: int):
        self.pid = pid
        self.fd = fd
        self.starttime = starttime


class Tracker:
    """Membership of processes in services, behind one interface for every means."""

    def __init__(self, loop: Loop, *, cgroup: str | None = None, means: str | None = None,
                 pid1: bool | None = None):
        """Pick the best means here, or the one `means` (or $ROOST_TRACKING) forces.

        `cgroup` names a directory roost may own (else $ROOST_CGROUP; "off" for none).
        """
        self._loop = loop
        self._me = os.getpid()
        pid1 = self._me == 1 if pid1 is None else pid1
        cgroup = cgroup if cgroup is not None else os.environ.get("ROOST_CGROUP") or None
        forced = means or os.environ.get("ROOST_TRACKING") or None
        if forced is not None and forced not in MEANS:
            console.say(f"tracking: unknown means {forced!r} ignored (one of {', '.join(MEANS)})")
            forced = None
        self.notes: list[str] = []
        self.cgroups: Tree | None = None
        self.connector: Connector | None = None
        self.lineage = Lineage(self._me)
        self._connector_tried = False
        self._means: dict[str, str] = {}
        self._map: dict[int, str] = {}
        self._pids: dict[str, set[int]] = {}
        self._pending: dict[int, str] = {}
        self._waits: dict[str, _Wait] = {}
        self._mains: dict[str, _Main] = {}
        self._killers: dict[str, Timer] = {}
        self._spawned: dict[int, int] = {}  # pid -> start time of each service's first process
        self._adopted: dict[int, tuple[int, str | None, str]] = {}
        self._adoption_scan: Timer | None = None
        self._lineage_cache: tuple[int, dict[int, str]] | None = None
        self.lost_events = 0
        self.default = LINEAGE
        if forced in (None, CGROUP) and cgroup != "off":
            tree, why = Tree.detect(cgroup, pid1)
            if tree is not None:
                self.cgroups = tree
                self.default = CGROUP
                if tree.created or tree.moved_from is not None:
                    import atexit  # noqa: PLC0415 - only when there is something to undo

                    atexit.register(self.close)
            else:
                self.notes.append(f"no cgroup tracking: {why}")
        if self.default != CGROUP and forced in (None, CONNECTOR) and self._open_connector():
            self.default = CONNECTOR
        if forced is not None and forced != self.default:
            self.notes.append(f"{forced} tracking was asked for but is not available here")
        for note in self.notes:
            console.debug(f"tracking: {note}")
        console.debug(f"tracking: services are tracked by {self.describe()}")

    def describe(self) -> str:
        """The default means, in words (with the cgroup base when there is one)."""
        if self.default == CGROUP and self.cgroups is not None:
            return f"cgroup ({self.cgroups.base})"
        return self.default

    # -- the connector -----------------------------------------------------------

    def _open_connector(self) -> bool:
        if self.connector is not None:
            return True
        if self._connector_tried:
            return False
        self._connector_tried = True
        conn, why = Connector.probe()
        if conn is None:
            self.notes.append(f"no proc-connector tracking: {why}")
            return False
        self.connector = conn
        self._loop.watch(conn.fileno(), READ, lambda _events: self._drain())
        return True

    def _drain(self) -> None:
        conn = self.connector
        if conn is None:
            return
        events, lost = conn.read()
        for event in events:
            self._on_event(event)
        if lost:
            self._resync()

    def _on_event(self, event: Event) -> None:
        kind, a, b = event
        if kind == FORK:
            name = self._map.get(a)
            if name is None and a == self._me:
                name = self._pending.pop(b, None)
            if name is not None:
                self._map[b] = name
                self._pids.setdefault(name, set()).add(b)
        elif kind == EXIT:
            name = self._map.pop(a, None)
            if name is not None:
                pids = self._pids.get(name)
                if pids is not None:
                    pids.discard(a)
                    if not pids and name in self._waits:
                        self._soon(name)
                # Its children (if any) are coming home to roost: note them as they arrive.
                if self._adoption_scan is None:
                    self._adoption_scan = self._loop.call_later(0, self._look_for_adoptees)

    def _resync(self) -> None:
        """Events were lost: rebuild the map from /proc, seeded with what it held."""
        self.lost_events += 1
        console.say("tracking: the kernel dropped process events; rebuilding from /proc")
        table = proc.snapshot()
        floor = Lineage(self._me)
        for name, pids in self._pids.items():
            floor.known[name] = {p: table[p].starttime for p in pids if p in table}
            floor.ids[name] = set()
        owner = floor.scan(table)
        self._map = {p: n for p, n in owner.items() if table[p].state != "Z"}
        self._pids = {}
        for pid, name in self._map.items():
            self._pids.setdefault(name, set()).add(pid)
        for name in list(self._waits):
            if not self._pids.get(name):
                self._soon(name)

    # -- placement and start ---------------------------------------------------------

    def placement(self, config: ServiceConfig) -> str | None:
        """Get the service's cgroup ready (limits applied); its path, or None if it has none."""
        name = config.name
        if self.cgroups is not None:
            try:
                path, warnings = self.cgroups.prepare(config)
            except OSError as exc:
                console.say(f"{name}: no cgroup ({exc.strerror}); tracked by lineage instead")
            else:
                for warning in warnings:
                    console.say(f"{name}: {warning}")
                self._means[name] = CGROUP
                return path
            self._means[name] = CONNECTOR if self._open_connector() else LINEAGE
            return None
        self._means[name] = self.default
        return None

    def started(self, name: str, pid: int, forking: bool = False) -> None:
        """A new instance of `name` was spawned as `pid` (placed in its cgroup, if any)."""
        means = self._means.setdefault(name, self.default)
        self._stop_rekill(name)
        st = proc.stat(pid)
        if st is not None:
            self._spawned[pid] = st.starttime
        if means == CONNECTOR:
            for old in self._pids.pop(name, set()):
                self._map.pop(old, None)
            # Events queued before the spawn (an old owner of this PID exiting) must be
            # read first; the spawn's own fork event then maps the child.
            self._pending[pid] = name
            self._drain()
            if self._pending.pop(pid, None) is not None and st is not None:
                self._map[pid] = name
                self._pids.setdefault(name, set()).add(pid)
        elif means == LINEAGE:
            self.lineage.started(name, pid, claim=forking)
            self._lineage_cache = None

    def exited(self, name: str, pid: int) -> None:
        """A process roost spawned for `name` exited: what it left came home to roost now."""
        born = self._spawned.pop(pid, None)
        if born is None or self.means_for(name) != LINEAGE:
            return
        # Only a child of roost that roost did not spawn, born after this one, can have
        # come home with it: without one, there is nothing to claim (and no scan to pay).
        for child in _children(self._me):
            if child in self._spawned:
                continue
            st = proc.stat(child)
            if st is not None and st.starttime >= born and st.state != "Z":
                self.lineage.claim(name, born)
                self._scan_lineage()
                return

    def settled(self, name: str) -> None:
        """A forking service's main process is known: roost stops claiming orphans for it."""
        self.lineage.settled(name)

    # -- membership ---------------------------------------------------------------

    def means_for(self, name: str) -> str:
        """How `name`'s processes are tracked, in a word for `roost status`."""
        return self._means.get(name, self.default)

    def cgroup_of(self, name: str) -> str | None:
        """The service's cgroup directory, when it has one."""
        if self.cgroups is not None and self.means_for(name) == CGROUP:
            return self.cgroups.path(name)
        return None

    def _pids_of(self, name: str, table: dict[int, proc.ProcStat] | None,
                 fresh: bool = True) -> list[int]:
        means = self.means_for(name)
        if means == CGROUP and self.cgroups is not None:
            return self.cgroups.procs(name)
        if means == CONNECTOR:
            self._drain()
            return sorted(self._pids.get(name, ()))
        cache = self._lineage_cache
        if table is None and cache is not None and cache[0] == self._loop.polls \
                and name not in self.lineage.live:
            # Nobody of the service earlier in this turn: nobody since either, as only a
            # live member can fork a new one. Only a non-empty answer must be fresh.
            return []
        owner = self._scan_lineage(table, fresh=fresh)
        return [p for p, n in owner.items() if n == name]

    def _scan_lineage(self, table: dict[int, proc.ProcStat] | None = None,
                      fresh: bool = True) -> dict[int, str]:
        """The lineage map; with `fresh` False, at most one scan per turn of the reactor.

        Signal rounds and emptiness checks take the turn's scan (a turn that stops a
        thousand services reads /proc once, not a thousand times); every decision
        (membership of a PID, the main process, leftovers) scans afresh.
        """
        turn = self._loop.polls
        if table is None and not fresh and self._lineage_cache is not None \
                and self._lineage_cache[0] == turn:
            return self._lineage_cache[1]
        owner = self.lineage.scan(table)
        self._lineage_cache = (turn, owner)
        return owner

    def members(self, name: str, table: dict[int, proc.ProcStat] | None = None,
                fresh: bool = True) -> list[proc.ProcStat]:
        """The live processes of `name` (zombies excluded)."""
        found = []
        for pid in self._pids_of(name, table, fresh):
            st = table.get(pid) if table is not None else None
            if st is None:
                st = proc.stat(pid)
            if st is not None and st.state != "Z":
                found.append(st)
        return found

    def belongs(self, name: str, pid: int) -> bool:
        """True if `pid` is a live process of `name`."""
        return self.service_of(pid) == name and proc.stat(pid) is not None

    def service_of(self, pid: int, table: dict[int, proc.ProcStat] | None = None,
                   lineage_scan: bool = True) -> str | None:
        """The service `pid` belongs to, if any."""
        if self.cgroups is not None:
            name = self.cgroups.service_of(pid)
            if name is not None:
                return name
        if self.connector is not None:
            self._drain()
            name = self._map.get(pid)
            if name is not None:
                return name
        if lineage_scan and LINEAGE in self._means.values():
            return self._scan_lineage(table).get(pid)
        return None

    def pin(self, name: str, pid: int) -> int | None:
        """A pidfd for `pid` if it is (still) a process of `name`, else None."""
        means = self.means_for(name)
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            return None
        ok = False
        try:
            if means == CGROUP and self.cgroups is not None:
                ok = self.cgroups.holds(name, pid)
            elif means == CONNECTOR:
                # Had the member exited before pidfd_open, its exit event would be
                # queued by now: no event means the pidfd names the member.
                self._drain()
                ok = self._map.get(pid) == name
            else:
                ok = self._scan_lineage().get(pid) == name
            if ok:
                # Alive now, so it was alive through the checks: they were about it.
                _signal.pidfd_send_signal(fd, 0)
        except OSError:
            ok = False
        if not ok:
            os.close(fd)
            return None
        return fd

    def pins(self, name: str) -> list[tuple[int, int]]:
        """(pid, pidfd) for every live member, each verified after it was opened."""
        means = self.means_for(name)
        if means == LINEAGE:
            out = []
            for st in self.members(name, fresh=False):
                fd = proc.pin(st)
                if fd is not None:
                    out.append((st.pid, fd))
            return out
        opened = []
        for pid in self._pids_of(name, None):
            try:
                opened.append((pid, os.pidfd_open(pid)))
            except OSError:
                continue
        if means == CONNECTOR:
            self._drain()
        out = []
        for pid, fd in opened:
            if means == CONNECTOR:
                ok = self._map.get(pid) == name
            else:
                ok = self.cgroups is not None and self.cgroups.holds(name, pid)
            if ok:
                out.append((pid, fd))
            else:
                os.close(fd)
        return out

    # -- signals ----------------------------------------------------------------------

    def signal_all(self, name: str, signum: int) -> int:
        """Signal every process of `name` through pidfds; return how many were signalled.

        SIGKILL uses cgroup.kill where there is one (atomic, even against a fork
        bomb); elsewhere every member is first stopped (SIGSTOP), round after round
        until none is new, so none can fork between the rounds and the kill, and the
        kill is repeated until the service is empty.
        """
        if signum == _signal.SIGKILL:
            if self.means_for(name) == CGROUP and self.cgroups is not None \
                    and self.cgroups.kill(name):
                return len(self.cgroups.procs(name))
            self._rounds(name, _signal.SIGSTOP)
            count = self._rounds(name, _signal.SIGKILL)
            if self.members(name):
                self._rekill_later(name)
            return count
        return self._rounds(name, signum)

    def _rounds(self, name: str, signum: int) -> int:
        sent: set[int] = set()
        for _ in range(ROUNDS):
            fresh = 0
            for pid, fd in self.pins(name):
                try:
                    if pid not in sent:
                        _signal.pidfd_send_signal(fd, signum)
                        sent.add(pid)
                        fresh += 1
                except OSError:
                    pass
                finally:
                    os.close(fd)
            if not fresh:
                break
        return len(sent)

    def _rekill_later(self, name: str) -> None:
        self._stop_rekill(name)

        def again() -> None:
            self._killers.pop(name, None)
            self.signal_all(name, _signal.SIGKILL)

        self._killers[name] = self._loop.call_later(REKILL_INTERVAL, again)

    def _stop_rekill(self, name: str) -> None:
        timer = self._killers.pop(name, None)
        if timer is not None:
            timer.cancel()

    # -- the main process ----------------------------------------------------------

    def watch_main(self, name: str, pid: int, on_exit: Callable[[], None]) -> bool:
        """Pin `pid` as the main process of `name`; call `on_exit` once it exits."""
        self.unwatch_main(name)
        fd = self.pin(name, pid)
        if fd is None:
            return False
        st = proc.stat(pid)
        main = _Main(pid, fd, st.starttime if st is not None else 0)
        self._mains[name] = main

        def exited(_events: int) -> None:
            # The reactor may hand over an event of an earlier descriptor that had this
            # number: only a pidfd that is readable now says its process exited.
            if self._mains.get(name) is main and _readable(fd):
                self.unwatch_main(name)
                on_exit()

        self._loop.watch(fd, READ, exited)
        return True

    def unwatch_main(self, name: str) -> None:
        """Stop watching the main process of `name`."""
        main = self._mains.pop(name, None)
        if main is not None:
            self._loop.unwatch(main.fd)
            os.close(main.fd)

    def main_of(self, name: str) -> int | None:
        """The PID of the watched main process of `name`, if any."""
        main = self._mains.get(name)
        return main.pid if main is not None else None

    def main_started(self, name: str) -> int:
        """The start time (clock ticks since boot) of the watched main process, or 0."""
        main = self._mains.get(name)
        return main.starttime if main is not None else 0

    def signal_main(self, name: str, signum: int) -> bool:
        """Signal the watched main process through its pidfd; False if none or gone."""
        main = self._mains.get(name)
        if main is None:
            return False
        try:
            _signal.pidfd_send_signal(main.fd, signum)
        except OSError:
            return False
        return True

    # -- waiting for a service to empty -------------------------------------------

    def when_empty(self, name: str, callback: Callable[[], None]) -> None:
        """Call `callback` once `name` has no process left (from the loop, never at once)."""
        self.cancel_wait(name)
        wait = _Wait(callback)
        self._waits[name] = wait
        means = self.means_for(name)
        if means == CGROUP and self.cgroups is not None:
            try:
                fd = self.cgroups.open_events(name)
            except OSError:
                self._soon(name)
                return
            wait.fds.append(fd)
            # cgroup.events raises EPOLLPRI on every change; reading it re-arms.
            self._loop.watch(fd, _EPOLLPRI, lambda _events: self._check(name, wait))
        elif means == LINEAGE:
            self._pin_for_wait(name, wait)
        self._check(name, wait)

    def _pin_for_wait(self, name: str, wait: _Wait) -> None:
        for fd in wait.fds:
            self._loop.unwatch(fd)
            os.close(fd)
        wait.fds = []
        for _pid, fd in self.pins(name)[:LINEAGE_PINS]:
            wait.fds.append(fd)
            self._loop.watch(fd, READ, lambda _events: self._check(name, wait))
        if not wait.fds:
            wait.timer = self._loop.call_later(LINEAGE_POLL, lambda: self._check(name, wait))

    def _empty(self, name: str) -> bool:
        if self.means_for(name) == CGROUP and self.cgroups is not None:
            return not self.cgroups.populated(name)
        return not self.members(name, fresh=False)

    def _check(self, name: str, wait: _Wait) -> None:
        if self._waits.get(name) is not wait:
            return
        if self._empty(name):
            self._soon(name)
        elif self.means_for(name) == LINEAGE:
            if wait.timer is not None:
                wait.timer.cancel()
                wait.timer = None
            self._pin_for_wait(name, wait)

    def _soon(self, name: str) -> None:
        wait = self._waits.get(name)
        if wait is None:
            return

        def fire() -> None:
            if self._waits.get(name) is not wait:
                return
            if not self._empty(name):
                self._check(name, wait)
                return
            self.cancel_wait(name)
            wait.callback()

        self._loop.call_later(0, fire)

    def cancel_wait(self, name: str) -> None:
        """Stop waiting for `name` to empty."""
        wait = self._waits.pop(name, None)
        if wait is None:
            return
        if wait.timer is not None:
            wait.timer.cancel()
        for fd in wait.fds:
            self._loop.unwatch(fd)
            os.close(fd)
        wait.fds = []
        self._stop_rekill(name)

    # -- orphans ---------------------------------------------------------------------

    def _look_for_adoptees(self) -> None:
        """Note the command line of every newly adopted child while it is fresh."""
        self._adoption_scan = None
        for pid in _children(self._me):
            if pid in self._adopted or pid in self._spawned:
                continue
            st = proc.stat(pid)
            if st is None or st.state == "Z" or st.ppid != self._me:
                continue
            self._adopted[pid] = (st.starttime, self.service_of(pid),
                                  proc.cmdline(pid) or f"[{st.comm}]")

    def orphans(self, table: dict[int, proc.ProcStat] | None = None) -> list[dict[str, object]]:
        """Processes that came home to roost (its children it did not spawn), by service.

        Each is listed with the service it came from (None if unknown) and its command
        line as first seen after its adoption.
        """
        table = proc.snapshot() if table is None else table
        found: list[dict[str, object]] = []
        alive: set[int] = set()
        lineage: dict[int, str] | None = None
        for st in table.values():
            if st.ppid != self._me or st.state == "Z" or st.pid == self._me:
                continue
            if self._spawned.get(st.pid) == st.starttime:
                continue
            alive.add(st.pid)
            seen = self._adopted.get(st.pid)
            if seen is None or seen[0] != st.starttime:
                service = self.service_of(st.pid, table, lineage_scan=False)
                if service is None and LINEAGE in self._means.values():
                    if lineage is None:
                        lineage = self._scan_lineage(table)
                    service = lineage.get(st.pid)
                seen = (st.starttime, service, proc.cmdline(st.pid) or f"[{st.comm}]")
                self._adopted[st.pid] = seen
            found.append({"pid": st.pid, "service": seen[1], "command": seen[2]})
        for pid in [p for p in self._adopted if p not in alive]:
            del self._adopted[pid]
        for pid in [p for p in self._spawned if p not in table]:
            del self._spawned[pid]
        return found

    # -- life cycle ----------------------------------------------------------------

    def forget(self, name: str) -> None:
        """The service was removed from the configuration."""
        self.cancel_wait(name)
        self.unwatch_main(name)
        self._stop_rekill(name)
        for pid in self._pids.pop(name, set()):
            self._map.pop(pid, None)
        self.lineage.forget(name)
        if self.cgroups is not None and self._means.get(name) == CGROUP:
            self.cgroups.remove(name)
        self._means.pop(name, None)

    def close(self) -> None:
        """Release the connector and remove every cgroup roost made."""
        for name in list(self._waits):
            self.cancel_wait(name)
        for name in list(self._mains):
            self.unwatch_main(name)
        if self.connector is not None:
            self._loop.unwatch(self.connector.fileno())
            self.connector.close()
            self.connector = None
        if self.cgroups is not None:
            self.cgroups.close()


def _readable(fd: int) -> bool:
    """True if a pidfd is readable now (its process has exited)."""
    try:
        return bool(select.select([fd], [], [], 0)[0])
    except (OSError, ValueError):
        return True


def _children(pid: int) -> list[int]:
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
