"""Forking services: naming the daemon a launcher leaves behind, and following its hand-overs.

A `type = "forking"` launcher is ready when it exits 0. Its daemon is then the
process its pid file names, if that is a live process of the service (never an
outsider: a pid file in a shared directory may lie), or else the one top-level
process the service has left. The daemon may go on dancing after that: its main
process exits 0 and hands over to a child it forked. Such an exit is not the
daemon's death when exactly one top-level process is left, born after the old
main (or the pid file names a new live member): roost follows it, up to
HAND_OVERS times in a row. That answers seed 003's question of which fork is the
real parent: the one that is left, as the service's own processes show it.
"""

from __future__ import annotations

import os

from roost.core import machine
from roost.core.exits import ExitStatus
from roost.kernel import console, proc

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from roost.core.actions import Action
    from roost.kernel.loop import Loop
    from roost.kernel.reaper import Reaper
    from roost.supervise.runtime import Runtime
    from roost.tracking import Tracker

# The timer that looks for a forking service's pid file, and how often it looks.
T_FIND_MAIN = "find-main"
PID_FILE_POLL = 0.02
# How many hand-overs in a row roost follows when a daemon's main process exits.
HAND_OVERS = 8
# How often roost re-reads a service whose top-level processes are dying as it looks.
SETTLE_READS = 5


class Daemons:
    """The daemons of forking services: found once the launcher exits, then followed."""

    def __init__(self, loop: Loop, reaper: Reaper, tracker: Tracker, *,
                 event: Callable[[Runtime, list[Action]], None],
                 gone: Callable[[Runtime], None]):
        self._loop = loop
        self._reaper = reaper
        self._tracker = tracker
        # Hand a machine event's actions to the supervisor, and tell it a service emptied.
        self._event = event
        self._gone = gone
        # A service's pid file as it was before the spawn: (inode, mtime, content).
        self._pid_files: dict[str, tuple[int, int, bytes] | None] = {}

    def before_spawn(self, rt: Runtime) -> None:
        """Note the pid file as it is: a launcher may write it before spawn() returns."""
        if rt.config.pid_file:
            self._pid_files[rt.name] = _file_state(self._pid_file_path(rt))

    def forget(self, name: str) -> None:
        """The service was removed."""
        self._pid_files.pop(name, None)

    # -- finding the daemon ----------------------------------------------------------

    def _pid_file_path(self, rt: Runtime) -> str:
        return os.path.join(rt.config.working_directory or "/", rt.config.pid_file or "")

    def _read_pid_file(self, rt: Runtime) -> int | None:
        """The PID the pid file names, once written for this start."""
        state = _file_state(self._pid_file_path(rt))
        if state is None or state == self._pid_files.get(rt.name):
            return None  # not written yet (or left over from an earlier run, untouched)
        try:
            return int(state[2].split()[0])
        except (ValueError, IndexError):
            return None  # being written

    def find_main(self, rt: Runtime) -> None:
        """The launcher exited 0: name the daemon (pid file, else the one top process)."""
        m = rt.machine
        if m.state != machine.STARTING or rt.timers.get(T_FIND_MAIN) is not None:
            return
        now = self._loop.now()
        name = rt.name
        tracker = self._tracker
        if rt.config.pid_file:
            members = tracker.members(name)
            path = self._pid_file_path(rt)
            pid = self._read_pid_file(rt)
            if pid is not None and tracker.belongs(name, pid):
                self._found_main(rt, pid)
                return
            if pid is not None and proc.stat(pid) is not None:
                self._event(rt, m.main_missing(
                    f"pid file {path} names pid {pid} ({proc.cmdline(pid) or '?'}), which is "
                    f"not a process of {name}: refused", now))
                return
            if not members:
                self._event(rt, m.main_missing(
                    f"the launcher exited 0 but left no process (pid file {path} "
                    f"{'names a dead process' if pid else 'not written'})", now))
                return

            # The daemon writes its pid file once it has settled, often after the
            # launcher is gone: look again until it does (the start timeout bounds this).
            def again() -> None:
                rt.timers.pop(T_FIND_MAIN, None)
                self.find_main(rt)

            rt.timers[T_FIND_MAIN] = self._loop.call_later(PID_FILE_POLL, again)
            return
        members, tops = self._tops(rt)
        if len(tops) == 1:
            self._found_main(rt, tops[0].pid)
            return
        if not members:
            reason = "the launcher exited 0 but left no process"
        else:
            reason = (f"{len(tops)} top-level processes left "
                      f"({', '.join(str(st.pid) for st in tops)}) and no pid_file to choose "
                      "the main one")
        self._event(rt, m.main_missing(reason, now))

    def _tops(self, rt: Runtime) -> tuple[list[proc.ProcStat], list[proc.ProcStat]]:
        """The service's members and its top-level ones, read while nothing moves.

        Each /proc read is a moment of its own: mid-dance, a parent can be read alive
        and its child read already adopted, two tops at once. Read again while a top
        has died since it was read.
        """
        members: list[proc.ProcStat] = []
        tops: list[proc.ProcStat] = []
        for _ in range(SETTLE_READS):
            members = self._tracker.members(rt.name)
            tops = top_level(members)
            if len(tops) <= 1 or all(_alive(st.pid) for st in tops):
                break
        return members, tops

    def _found_main(self, rt: Runtime, pid: int) -> None:
        self._tracker.settled(rt.name)
        self._event(rt, rt.machine.main_found(pid, self._loop.now()))
        if rt.machine.pid == pid and not self._watch_main(rt, pid):
            self._main_exited(rt, pid, None)

    # -- following it ------------------------------------------------------------------

    def follow(self, rt: Runtime, pid: int) -> bool:
        """Make `pid`, a process of the service, its main one (MAINPID=): pinned, then followed.

        False if it is gone before it could be pinned; the main process stays as it was.
        """
        old = rt.machine.pid
        if not self._watch_main(rt, pid):
            if old is not None and (rt.child is None or rt.child.pid != old) \
                    and not self._watch_main(rt, old):
                self._main_exited(rt, old, None)  # the one it replaced went meanwhile
            return False
        self._event(rt, rt.machine.main_changed(pid, self._loop.now()))
        return True

    def _watch_main(self, rt: Runtime, pid: int) -> bool:
        """Follow the daemon's exit: its status if roost reaps it, else its pidfd."""
        def reaped(_pid: int, status: ExitStatus) -> None:
            self._main_exited(rt, pid, status)

        def gone() -> None:
            # Its pidfd says it exited. If it was roost's child (adopted), the reaper
            # has its status: drain it, which calls reaped(). Else its parent reaps it.
            self._reaper.drain()
            if self._reaper.owns(pid):
                self._reaper.forget(pid)
                self._main_exited(rt, pid, None)

        if not self._tracker.watch_main(rt.name, pid, gone):
            return False
        self._reaper.watch(pid, reaped)
        return True

    def _main_exited(self, rt: Runtime, pid: int, status: ExitStatus | None) -> None:
        """The daemon ended (status None: its own parent reaped it)."""
        tracker = self._tracker
        born = 0
        if tracker.main_of(rt.name) == pid:
            born = tracker.main_started(rt.name)
            tracker.unwatch_main(rt.name)
        self._reaper.forget(pid)
        m = rt.machine
        if m.pid != pid:
            return
        # The dance may go on while roost follows it: an heir can exit before it is pinned.
        for _ in range(HAND_OVERS):
            heir = self._heir(rt, pid, status, born)
            if heir is None:
                break
            how = status.describe() if status is not None else "exited"
            console.say(f"{rt.name}: main process {pid} {how}, handing over to {heir}")
            st = proc.stat(heir)
            self._event(rt, m.main_changed(heir, self._loop.now()))
            if self._watch_main(rt, heir):
                return
            pid, status, born = heir, None, st.starttime if st is not None else born
        leftovers = rt.left_behind(tracker)
        detail = None if status is not None else (
            f"main process {pid} exited (its status went to its own parent)")
        self._event(rt, m.exited(status or ExitStatus(), self._loop.now(), leftovers, detail))
        if leftovers:
            tracker.when_empty(rt.name, lambda: self._gone(rt))

    def _heir(self, rt: Runtime, old: int, status: ExitStatus | None, born: int) -> int | None:
        """The process the daemon handed over to as it exited, if it did.

        With a pid file: the process it names now, if another live member. Without:
        an exit 0 (or unseen) that leaves exactly one top-level process, born after
        the old main, is the daemon's fork dance going on, not its death.
        """
        if rt.machine.state != machine.UP or rt.config.type != "forking":
            return None  # a notify service names its new main process itself (MAINPID=)
        if rt.config.pid_file:
            pid = self._read_pid_file(rt)
            if pid is not None and pid != old and self._tracker.belongs(rt.name, pid):
                return pid
            return None
        if status is not None and not status.success:
            return None
        members, tops = self._tops(rt)
        if len(tops) == 1 and tops[0].starttime >= born:
            return tops[0].pid
        console.debug(f"{rt.name}: no hand-over from {old}: top-level "
                      f"{[(st.pid, st.ppid, st.state, st.starttime) for st in tops]} of "
                      f"{len(members)} (main born {born})")
        return None


def top_level(members: list[proc.ProcStat]) -> list[proc.ProcStat]:
    """The members whose parent is not a member: the tops of a service's process trees."""
    pids = {st.pid for st in members}
    return [st for st in members if st.ppid not in pids]


def _alive(pid: int) -> bool:
    st = proc.stat(pid)
    return st is not None and st.state != "Z"


def _file_state(path: str) -> tuple[int, int, bytes] | None:
    """(inode, mtime, content) of a small file, or None if it cannot be read."""
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            return st.st_ino, st.st_mtime_ns, f.read(64)
    except OSError:
        return None
