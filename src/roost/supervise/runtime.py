"""One configured service as the supervisor holds it: its machine, its process, its pipes."""

from __future__ import annotations

from roost.core import machine
from roost.supervise.health import NO_HEALTH
from roost.supervise.readiness import Notes

TYPE_CHECKING = False
if TYPE_CHECKING:
    from roost.core.machine import Machine
    from roost.core.model import ServiceConfig
    from roost.kernel.loop import Timer
    from roost.kernel.spawn import Child
    from roost.supervise.health import Health
    from roost.supervise.logs import ServiceLog
    from roost.supervise.probes import Poll
    from roost.supervise.readiness import NotificationFd, NotifySocket


# A start that never came up settled when it entered one of these.
_ENDED = frozenset({machine.DONE, machine.FAILED, machine.BACKOFF})


class Runtime:
    """One configured service: its machine, its current process, and its pipes."""

    __slots__ = ("child", "exec_error", "health", "log", "machine", "name", "notes", "notify_fd",
                 "notify_malformed", "notify_refused", "notify_sock", "poll", "removing",
                 "status_text", "timers")

    def __init__(self, machine: Machine, log: ServiceLog):
        self.name = machine.config.name
        self.machine = machine
        self.log = log
        self.child: Child | None = None
        self.exec_error: str | None = None
        self.timers: dict[str, Timer] = {}
        self.notify_fd: NotificationFd | None = None
        self.notify_sock: NotifySocket | None = None
        # A `file:` or `tcp:` readiness being polled; this run's (or the last's) health.
        self.poll: Poll | None = None
        self.health: Health | None = None
        self.removing = False
        self.status_text = ""
        self.notes = Notes()
        # Datagrams on the notify socket not taken: from outside the service, or not a
        # notification at all. Counted for `roost status`, logged only now and then.
        self.notify_refused = 0
        self.notify_malformed = 0

    def record(self, now: float, tracking: str | None) -> dict[str, object]:
        """Its `roost status` record: state, pid, uptime, restarts, last exit, what was lost."""
        m = self.machine
        # ERRNO= and EXIT_STATUS= go with the exit of the run that sent them: while a main
        # process lives, last_exit is the run before's.
        running = m.pid is not None
        said = self.notes.last if running else self.notes.of_exit()
        last_exit = f"{m.last_exit} ({said})" if said and m.last_exit else m.last_exit
        phase = self.notes.phase if running else ""
        # up_since outlives the run it was set in, until the next spawn: a service that came
        # up and crashed settled when it came up.
        settled = m.up_since if m.up_since is not None else (
            m.since if m.state in _ENDED and m.starts else None)
        return {
            "name": self.name,
            "state": m.state,
            "pid": m.pid,
            "type": self.config.type,
            "since": round(now - m.since, 3),
            "uptime": round(now - m.up_since, 3) if m.state == machine.UP and m.up_since
            else None,
            "restarts": m.restarts,
            "last_exit": last_exit,
            "reason": m.reason,
            "status": self.status_text,
            "phase": phase or None,
            "phase_since": round(now - self.notes.phase_since, 3) if phase else None,
            "want": m.want,
            "tracking": tracking,
            "notify_refused": self.notify_refused,
            "notify_malformed": self.notify_malformed,
            "log_dropped": self.log.lost,
            # For `roost analyze`: when the last start began and when it settled (up, done
            # or failed), in seconds ago, and what it was ordered after.
            "start_age": round(now - m.starts[-1], 3) if m.starts else None,
            "settle_age": round(now - settled, 3) if settled is not None else None,
            "after": self.config.after,
            **(self.health.fields(m.state == machine.UP) if self.health else NO_HEALTH),
        }

    @property
    def config(self) -> ServiceConfig:
        """The service's definition: the machine's, which a reload replaces."""
        return self.machine.config


def broken_record(name: str, reason: str) -> dict[str, object]:
    """The status record of what the configuration could not set up: failed, with its error."""
    return {"name": name, "state": machine.FAILED, "pid": None, "type": None, "since": None,
            "uptime": None, "restarts": 0, "last_exit": None, "reason": reason, "status": "",
            "phase": None, "phase_since": None,
            "want": None, "tracking": None, "notify_refused": 0, "notify_malformed": 0,
            "log_dropped": 0, "start_age": None, "settle_age": None, "after": [],
            **NO_HEALTH}
