"""The Tracker: membership of processes in services, the same for every means.

What is common lives here: pidfds opened and then verified, signalling rounds, the
watched main process, waits for a service to empty, forgetting and closing. What
differs is asked of the service's means (see means.py), picked at construction; the
only other choice is the fallback for a service whose cgroup cannot be made.
"""

from __future__ import annotations

import _signal
import os

from roost.kernel import console, proc
from roost.kernel.loop import READ
from roost.tracking.cgroup import CgroupMeans, Tree
from roost.tracking.connector import Connector, ConnectorMeans
from roost.tracking.lineage import LineageMeans
from roost.tracking.means import CGROUP, CONNECTOR, MEANS, Unplaced, Wait
from roost.tracking.orphans import Orphans

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from roost.core.model import ServiceConfig
    from roost.kernel.loop import Loop, Timer
    from roost.tracking.means import Means

# Signal rounds per request: a member may fork between the read of the members and
# its own signal; each round signals what the previous one had not seen.
ROUNDS = 16
# While a SIGKILL has not emptied a service (no cgroup.kill), how often to repeat it.
REKILL_INTERVAL = 0.1


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
        self._waits: dict[str, Wait] = {}
        self._mains: dict[str, _Main] = {}
        self._killers: dict[str, Timer] = {}
        self._by_name: dict[str, Means] = {}
        self._orphans = Orphans(loop, self._me, self.service_of)
        self._lineage = LineageMeans(loop, self._me, self._orphans.came_home_since)
        self._cgroup: CgroupMeans | None = None
        self._connector: ConnectorMeans | None = None
        self._connector_tried = False
        self._default: Means = self._lineage
        if forced in (None, CGROUP) and cgroup != "off":
            tree, why = Tree.detect(cgroup, pid1)
            if tree is not None:
                self._cgroup = self._default = CgroupMeans(loop, tree)
                if self._cgroup.needs_close:
                    import atexit  # noqa: PLC0415 - lazy (start-up): only with something to undo

                    atexit.register(self.close)
            else:
                self.notes.append(f"no cgroup tracking: {why}")
        if self._cgroup is None and forced in (None, CONNECTOR):
            self._default = self._open_connector() or self._default
        if forced is not None and forced != self._default.name:
            self.notes.append(f"{forced} tracking was asked for but is not available here")
        for note in self.notes:
            console.debug(f"tracking: {note}")
        console.debug(f"tracking: services are tracked by {self.describe()}")

    # -- the choice of means ---------------------------------------------------------

    def _open_connector(self) -> ConnectorMeans | None:
        """The connector means, probed once; None where it does not work."""
        if self._connector is not None or self._connector_tried:
            return self._connector
        self._connector_tried = True
        conn, why = Connector.probe()
        if conn is None:
            self.notes.append(f"no proc-connector tracking: {why}")
            return None
        self._connector = ConnectorMeans(self._loop, conn, self._me, emptied=self._soon,
                                         left=self._orphans.expect)
        return self._connector

    def _every_means(self) -> list[Means]:
        """Every means in use, the most precise first."""
        return [m for m in (self._cgroup, self._connector, self._lineage) if m is not None]

    def _assign(self, name: str, means: Means) -> None:
        old = self._by_name.get(name)
        if old is means:
            return
        if old is not None:
            old.forget(name)
        self._by_name[name] = means
        means.take(name)

    def _of(self, name: str) -> Means:
        return self._by_name.get(name, self._default)

    @property
    def default(self) -> str:
        """The means a service gets unless its own cannot be had, in a word."""
        return self._default.name

    def describe(self) -> str:
        """The default means, in words (with the cgroup base when there is one)."""
        return self._default.describe()

    # -- placement and start ---------------------------------------------------------

    def placement(self, config: ServiceConfig) -> str | None:
        """Get the service's cgroup ready (limits applied); its path, or None if it has none."""
        means = self._default
        try:
            path = means.place(config)
        except Unplaced as exc:
            # The default cannot take this service: the connector, else the floor.
            means = self._open_connector() or self._lineage
            console.say(f"{config.name}: {exc}; tracked by {means.name} instead")
            path = None
        self._assign(config.name, means)
        return path

    def started(self, name: str, pid: int, forking: bool = False) -> None:
        """A new instance of `name` was spawned as `pid` (placed in its cgroup, if any)."""
        means = self._by_name.get(name)
        if means is None:
            means = self._default
            self._assign(name, means)
        self._stop_rekill(name)
        st = proc.stat(pid)
        if st is not None:
            self._orphans.spawned(pid, st.starttime)
        means.started(name, pid, st, forking)

    def exited(self, name: str, pid: int) -> None:
        """A process roost spawned for `name` exited: what it left came home to roost now."""
        born = self._orphans.reaped(pid)
        if born is not None:
            self._of(name).exited(name, born)

    def settled(self, name: str) -> None:
        """A forking service's main process is known: roost stops claiming orphans for it."""
        self._of(name).settled(name)

    # -- membership ---------------------------------------------------------------

    def means_for(self, name: str) -> str:
        """How `name`'s processes are tracked, in a word for `roost status`."""
        return self._of(name).name

    def cgroup_of(self, name: str) -> str | None:
        """The service's cgroup directory, when it has one."""
        return self._of(name).cgroup_of(name)

    def members(self, name: str, table: dict[int, proc.ProcStat] | None = None,
                fresh: bool = True) -> list[proc.ProcStat]:
        """The live processes of `name` (zombies excluded)."""
        return self._of(name).members(name, table, fresh)

    def belongs(self, name: str, pid: int) -> bool:
        """True if `pid` is a live process of `name`."""
        return self.service_of(pid) == name and proc.stat(pid) is not None

    def service_of(self, pid: int, table: dict[int, proc.ProcStat] | None = None) -> str | None:
        """The service `pid` belongs to, if any, asking the most precise means first."""
        for means in self._every_means():
            name = means.service_of(pid, table)
            if name is not None:
                return name
        return None

    def pin(self, name: str, pid: int) -> int | None:
        """A pidfd for `pid` if it is (still) a process of `name`, else None."""
        means = self._of(name)
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            return None
        ok = False
        try:
            ok = means.holds(name, pid)
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
        return self._of(name).pins(name)

    # -- signals ----------------------------------------------------------------------

    def signal_all(self, name: str, signum: int) -> int:
        """Signal every process of `name` through pidfds; return how many were signalled.

        SIGKILL uses cgroup.kill where there is one (atomic, even against a fork
        bomb); elsewhere every member is first stopped (SIGSTOP), round after round
        until none is new, so none can fork between the rounds and the kill, and the
        kill is repeated until the service is empty.
        """
        if signum == _signal.SIGKILL:
            means = self._of(name)
            if means.kill(name):
                return len(means.pids(name))
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
            # The event is this pidfd's own (docs/DESIGN.md, "Descriptor reuse"): its
            # process exited. A main replaced meanwhile was unwatched with its pidfd.
            if self._mains.get(name) is main:
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
        wait = Wait(callback)
        self._waits[name] = wait
        if not self._of(name).arm(name, wait, lambda: self._check(name, wait)):
            self._soon(name)
            return
        self._check(name, wait)

    def _check(self, name: str, wait: Wait) -> None:
        if self._waits.get(name) is not wait:
            return
        means = self._of(name)
        if means.empty(name):
            self._soon(name)
        else:
            means.rearm(name, wait, lambda: self._check(name, wait))

    def _soon(self, name: str) -> None:
        """`name` may be empty: if someone waits, call them in the next turn if it still is."""
        wait = self._waits.get(name)
        if wait is None:
            return

        def fire() -> None:
            if self._waits.get(name) is not wait:
                return
            if not self._of(name).empty(name):
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
        wait.release(self._loop)
        self._stop_rekill(name)

    # -- orphans and life cycle --------------------------------------------------------

    def orphans(self, table: dict[int, proc.ProcStat] | None = None) -> list[dict[str, object]]:
        """Processes that came home to roost (its children it did not spawn), by service.

        Each is listed with the service it came from (None if unknown) and its command
        line as first seen after its adoption.
        """
        return self._orphans.report(table)

    def forget(self, name: str) -> None:
        """The service was removed from the configuration."""
        self.cancel_wait(name)
        self.unwatch_main(name)
        self._stop_rekill(name)
        means = self._by_name.pop(name, None)
        if means is not None:
            means.forget(name)

    def close(self) -> None:
        """Release the connector and remove every cgroup roost made."""
        for name in list(self._waits):
            self.cancel_wait(name)
        for name in list(self._mains):
            self.unwatch_main(name)
        for means in self._every_means():
            means.close()

