"""roost's own readiness, told to whoever started it, as its services' states change.

Three ways, any of them, chosen at start (up.py): the $NOTIFY_SOCKET roost was
given (READY=1 at the first settle, STATUS= with each change of the summary,
RELOADING=1 and READY=1 around a reload, STOPPING=1 at shutdown); a --ready-fd
descriptor, which gets its newline at the first settle; a --ready-file, which
exists while every wanted service is up (or done) and not unhealthy (core/ready.py).

The first settle is the moment the start of every autostart service is over:
each is up, done, failed, or held by a failure, none still on its way
(Order.at_rest). Changes are looked at once per turn of the reactor, however many
a batch of moves brought.
"""

from __future__ import annotations

import time

from roost.core import ready
from roost.kernel import console
from roost.kernel import ready as outward

TYPE_CHECKING = False
if TYPE_CHECKING:
    from roost.kernel.loop import Timer
    from roost.kernel.ready import ReadyFile
    from roost.supervise.supervisor import Supervisor


class Announcer:
    """Follows a supervisor's changes and tells the outside when roost is ready."""

    def __init__(self, supervisor: Supervisor, *, notify: str | None = None,
                 ready_fd: int | None = None, ready_file: ReadyFile | None = None):
        self.supervisor = supervisor
        self.notify = notify
        self.ready_fd = ready_fd
        self.ready_file = ready_file
        self.settled = False
        self.stopping = False
        self._names: list[str] = []
        self._pending: list[str] = []
        self._due: Timer | None = None
        self._status = ""

    def begin(self) -> None:
        """Every autostart service was asked up: wait for the first settle, follow each change."""
        order = self.supervisor.order
        self._names = [n for n, m in order.machines.items() if m.config.autostart]
        self._pending = list(self._names)
        self.supervisor.on_change = self.changed
        self.changed()

    def changed(self) -> None:
        """A service changed state: look at all of them once this turn of the reactor ends."""
        if self._due is None:
            self._due = self.supervisor.loop.call_later(0, self._look)

    def _look(self) -> None:
        self._due = None
        if self.stopping:
            return
        records = self.supervisor.status()
        text = ready.summary(records)
        if not self.settled and self._first_settle():
            self.settled = True
            console.say(f"ready: {text}")
            self._send(f"READY=1\nSTATUS={text}")
            self._status = text
            if self.ready_fd is not None:
                outward.signal_fd(self.ready_fd)
                self.ready_fd = None
        elif self.settled and text != self._status:
            self._status = text
            self._send(f"STATUS={text}")
        if self.ready_file is not None:
            self.ready_file.set(not ready.not_ready(records), text)

    def _first_settle(self) -> bool:
        """Whether every autostart service is at rest; each is looked at once until it is."""
        order = self.supervisor.order
        while self._pending:
            if not order.at_rest(self._pending[-1]):
                return False
            self._pending.pop()
        # One that was at rest may have moved again since (a crash into backoff).
        self._pending = [n for n in self._names if not order.at_rest(n)]
        return not self._pending

    def _send(self, text: str) -> None:
        if self.notify is not None:
            outward.notify(self.notify, text)

    def reloading(self) -> None:
        """A reload begins: RELOADING=1, with when on the monotonic clock (sd_notify(3))."""
        self._send(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}")

    def reloaded(self) -> None:
        """The reload is over, applied or refused: READY=1 again once roost was ready."""
        if self.settled and not self.stopping:
            self._send(f"READY=1\nSTATUS={self._status}")
        self.changed()

    def stop(self) -> None:
        """Shutting down: STOPPING=1, the ready file gone, a --ready-fd never ready."""
        if self.stopping:
            return
        self.stopping = True
        self._send("STOPPING=1\nSTATUS=stopping")
        if self.ready_file is not None:
            self.ready_file.set(False)
        if self.ready_fd is not None:
            # Closed with no newline: whoever waits learns roost will never be ready.
            outward.close_fd(self.ready_fd)
            self.ready_fd = None

    def close(self) -> None:
        """On leaving: the ready file goes too."""
        self.stop()
        if self.ready_file is not None:
            self.ready_file.close()
