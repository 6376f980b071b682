"""Which processes belong to which service.

Every service starts in a session of its own (setsid), so its processes share
the session and process group whose id is the first PID. That finds every
process of a service that did not call setsid() itself.
"""

from __future__ import annotations

from roost import proc

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from roost.loop import Loop, Timer

# While a service's leftovers are being waited for, how often to look again.
POLL_INTERVAL = 0.05


class Tracker:
    """Membership of processes in services, by session and process group."""

    means = "session"

    def __init__(self, loop: Loop):
        self._loop = loop
        self._leaders: dict[str, int] = {}
        self._polls: dict[str, Timer] = {}

    def started(self, name: str, pid: int) -> None:
        """A new instance of `name` was spawned as `pid` (its session leader)."""
        self._leaders[name] = pid

    def members(self, name: str, table: dict[int, proc.ProcStat] | None = None
                ) -> list[proc.ProcStat]:
        """The live processes of `name` (zombies excluded)."""
        leader = self._leaders.get(name)
        if leader is None:
            return []
        table = proc.snapshot() if table is None else table
        return [st for st in table.values()
                if leader in (st.sid, st.pgid) and st.state != "Z"]

    def belongs(self, name: str, pid: int) -> bool:
        """True if `pid` is a live process of `name`."""
        leader = self._leaders.get(name)
        st = proc.stat(pid)
        return leader is not None and st is not None and leader in (st.sid, st.pgid)

    def when_empty(self, name: str, callback: Callable[[], None]) -> None:
        """Call `callback` once `name` has no process left (polled only while waiting)."""
        self.cancel_wait(name)

        def look() -> None:
            if self.members(name):
                self._polls[name] = self._loop.call_later(POLL_INTERVAL, look)
            else:
                self._polls.pop(name, None)
                callback()

        self._polls[name] = self._loop.call_later(POLL_INTERVAL, look)

    def cancel_wait(self, name: str) -> None:
        """Stop waiting for `name` to empty."""
        timer = self._polls.pop(name, None)
        if timer is not None:
            timer.cancel()

    def forget(self, name: str) -> None:
        """The service was removed from the configuration."""
        self.cancel_wait(name)
        self._leaders.pop(name, None)

    def means_for(self, name: str) -> str:
        """How `name`'s processes are tracked, in a word for `roost status`."""
        return self.means
