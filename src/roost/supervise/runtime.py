"""One configured service as the supervisor holds it: its machine, its process, its pipes."""

from __future__ import annotations

import errno as errnos
import os

from roost.core import machine

TYPE_CHECKING = False
if TYPE_CHECKING:
    from roost.core.machine import Machine
    from roost.core.model import ServiceConfig
    from roost.kernel.loop import Loop, Timer
    from roost.kernel.spawn import Child
    from roost.supervise.channels import NotificationFd, NotifySocket
    from roost.supervise.logs import ServiceLog
    from roost.supervise.probes import CommandProbe, Connect, Poll
    from roost.tracking import Tracker


# A start that never came up settled when it entered one of these.
_ENDED = frozenset({machine.DONE, machine.FAILED, machine.BACKOFF})


STARTING = "starting"
HEALTHY = "healthy"
UNHEALTHY = "unhealthy"


class Health:
    """One run's health: its state, the failures in a row, what the last probe said."""

    __slots__ = ("active", "checks", "failures", "last", "probe", "since", "state", "timer")

    def __init__(self, now: float):
        self.state = STARTING
        self.since = now
        self.failures = 0
        self.checks = 0
        self.last = ""
        self.active = True
        self.timer: Timer | None = None
        self.probe: Connect | CommandProbe | None = None

    def fields(self, up: bool) -> dict[str, object]:
        """Its part of the status record; the state only while up, or once it ended the run."""
        shown_state = self.state if up or self.state == UNHEALTHY else None
        return {"health": shown_state, "health_failures": self.failures,
                "health_checks": self.checks, "health_last": self.last}


# A service without `health`: its part of the status record (Health.fields).
NO_HEALTH: dict[str, object] = {"health": None, "health_failures": 0, "health_checks": 0,
                                "health_last": ""}


class Listeners:
    """The descriptors open for one `sockets` configuration, in its order."""

    __slots__ = ("fds", "spec")

    def __init__(self, spec: list[list[object]], fds: list[tuple[str, int]]):
        self.spec = spec
        self.fds = fds

    def close(self) -> None:
        """Close every descriptor; safe to call twice."""
        for _name, fd in self.fds:
            os.close(fd)
        self.fds = []


class Notes:
    """What a notify service said of itself beyond READY=1: its phase, errno, exit status."""

    __slots__ = ("errno", "exit_status", "ignored", "last", "phase", "phase_since")

    def __init__(self) -> None:
        # "reloading" (RELOADING=1, until READY=1) or "stopping" (STOPPING=1), and since when.
        self.phase = ""
        self.phase_since = 0.0
        self.errno: int | None = None
        self.exit_status: int | None = None
        # What the run before this one said of its end, shown with its exit.
        self.last = ""
        self.ignored = 0

    def spawned(self) -> None:
        """A new run begins: what the last one said goes with its exit; its phase is over."""
        self.last = self.of_exit()
        self.errno = self.exit_status = None
        self.phase = ""

    def of_exit(self) -> str:
        """ERRNO= and EXIT_STATUS= of this run as shown beside its exit ("" if neither)."""
        said = []
        if self.errno is not None:
            name = errnos.errorcode.get(self.errno)
            said.append(f"ERRNO={self.errno}" + (f" ({name}: {os.strerror(self.errno)})"
                                                 if name else ""))
        if self.exit_status is not None:
            said.append(f"EXIT_STATUS={self.exit_status}")
        return ", ".join(said)


class Runtime:
    """One configured service: its machine, its current process, and its pipes."""

    __slots__ = ("child", "command", "exec_error", "fd_store", "health", "listeners", "log",
                 "machine", "name", "notes", "notify_fd",
                 "notify_malformed", "notify_refused", "notify_sock", "poll", "removing",
                 "status_text", "timers")

    def __init__(self, machine: Machine, log: ServiceLog):
        self.name = machine.config.name
        self.machine = machine
        self.log = log
        self.child: Child | None = None
        # The command around the main one that runs now (supervise/around.py).
        self.command: Child | None = None
        self.exec_error: str | None = None
        self.timers: dict[str, Timer] = {}
        self.notify_fd: NotificationFd | None = None
        self.notify_sock: NotifySocket | None = None
        # FDSTORE=1: (name, descriptor) in the order stored, kept across restarts, passed
        # from fd 3 up at each start; closed when the service stops for good.
        self.fd_store: list[tuple[str, int]] = []
        # `sockets`: what roost listens on for it (supervise/sockets.py).
        self.listeners: Listeners | None = None
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
            # The command around the main one that runs (exec_start_pre...), with its place.
            "step": f"{m.step} {m.command_number}" if self.command is not None else None,
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
            # A feature's fields only for a service that uses it: a status reply of many
            # services is held whole in roost's memory while it is sent.
            **(self.health.fields(m.state == machine.UP) if self.health
               else NO_HEALTH if self.config.health is not None else {}),
            **({"fds_stored": len(self.fd_store)} if self.config.fd_store_max else {}),
            **({"listening": len(self.listeners.fds) if self.listeners else 0}
               if self.config.sockets else {}),
        }

    def begin_run(self) -> None:
        """A new run is being started: the last one's errors and notes go with its exit.

        Its log is marked where the run follows another, with how that one ended.
        """
        self.exec_error = None
        self.notes.spawned()
        m = self.machine
        said = self.notes.last
        ended = m.last_exit or m.reason or "stopped"
        self.log.begin_run(f"{ended} ({said})" if said else ended)

    def flush_fd_store(self, name: str | None = None) -> int:
        """Close the stored descriptors (those called `name`, or all); return how many."""
        keep = [(n, fd) for n, fd in self.fd_store if name is not None and n != name]
        for n, fd in self.fd_store:
            if name is None or n == name:
                os.close(fd)
        closed = len(self.fd_store) - len(keep)
        self.fd_store = keep
        return closed

    def drop_held(self) -> str:
        """Stopped for good: close what it stored and its sockets; say what, or ""."""
        closed = []
        if self.fd_store:
            closed.append(f"{self.flush_fd_store()} stored descriptors")
        if self.listeners is not None and self.listeners.fds:
            closed.append(f"{len(self.listeners.fds)} sockets")
            self.listeners.close()
        self.listeners = None
        return " and ".join(closed)

    def release(self, loop: Loop) -> None:
        """The service left the configuration: close all it held, cancel its timers."""
        self.flush_fd_store()
        if self.listeners is not None:
            self.listeners.close()
        for timer in self.timers.values():
            timer.cancel()
        self.log.close(loop)
        if self.notify_sock is not None:
            self.notify_sock.close()

    def left_behind(self, tracker: Tracker) -> bool:
        """Whether processes of it are left that its end waits for (none with kill_mode process)."""
        return self.config.kill_mode != "process" and bool(tracker.members(self.name))

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
            "log_dropped": 0, "start_age": None, "settle_age": None, "after": []}
