"""The one place roost waits for children.

A `waitpid(-1)` anywhere else would steal statuses from their owners, so every
exit in the process goes through `Reaper.drain`, which is called on each SIGCHLD
and hands each status to whoever registered that PID. Anything else (orphans
re-parented to roost as PID 1 or as a subreaper) goes to the orphan handler.
"""

import posix

from roost.core.exits import ExitStatus

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable



class Reaper:
    """Drain every exited child and route its status to the PID's owner."""

    __slots__ = ("_owners", "childless", "on_orphan")

    def __init__(self) -> None:
        self._owners: dict[int, Callable[[int, ExitStatus], None]] = {}
        self.on_orphan: Callable[[int, ExitStatus], None] | None = None
        # True once a drain found no child left at all (ECHILD): every descendant is gone.
        self.childless = False

    def watch(self, pid: int, callback: "Callable[[int, ExitStatus], None]") -> None:
        """Send the exit status of `pid` to `callback` when it is reaped."""
        self._owners[pid] = callback

    def forget(self, pid: int) -> None:
        """Stop routing `pid`; its exit will be treated as an orphan's."""
        self._owners.pop(pid, None)

    def owns(self, pid: int) -> bool:
        """True if some owner waits for `pid`."""
        return pid in self._owners

    def has_children(self) -> bool:
        """True if any child is left, exited or not (nothing is reaped by asking)."""
        try:
            posix.waitid(posix.P_ALL, 0, posix.WEXITED | posix.WNOHANG | posix.WNOWAIT)
        except ChildProcessError:
            return False
        return True

    def drain(self) -> int:
        """Reap every child that has exited; return how many were reaped."""
        # The hot path of an orphan storm: names bound locally, one object per exit.
        waitid, flags, p_all = posix.waitid, posix.WEXITED | posix.WNOHANG, posix.P_ALL
        exited, owners, on_orphan = posix.CLD_EXITED, self._owners, self.on_orphan
        count = 0
        while True:
            try:
                result = waitid(p_all, 0, flags)
            except ChildProcessError:
                self.childless = True
                break
            except InterruptedError:
                continue
            if result is None:
                self.childless = False
                break
            pid = result.si_pid
            count += 1
            callback = owners.pop(pid, None) or on_orphan
            if callback is None:
                continue  # an orphan nobody listens to: reaped, nothing to build
            if result.si_code == exited:
                status = ExitStatus(result.si_status)
            else:
                status = ExitStatus(None, result.si_status, result.si_code == posix.CLD_DUMPED)
            try:
                callback(pid, status)
            except BaseException:  # noqa: BLE001 - the next status must still be reaped
                from roost.kernel import console  # noqa: PLC0415 - lazy (start-up): the failure path only

                console.error_trace(f"exit handler of pid {pid}")
        return count
