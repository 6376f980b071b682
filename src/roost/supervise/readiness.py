"""What a service's notifications mean: who may speak for it, and what each field does.

The channels they arrive on are in channels.py. A datagram speaks for the service
only if its sender is a process of the service (`admitted`): never by uid, since any
process of that uid, or root, outside the service could otherwise mark it ready.
Notifications carries out what an admitted one says, field by field as sd_notify(3)
defines them, as events of the service's machine.
"""

from __future__ import annotations

from roost.config.check import MAX_PIDS, MAX_SECONDS
from roost.core import machine
from roost.kernel import console

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from roost.core.actions import Action
    from roost.kernel.loop import Loop
    from roost.supervise.forking import Daemons
    from roost.supervise.runtime import Runtime
    from roost.tracking import Tracker

MAX_USEC = MAX_SECONDS * 1_000_000
MAX_ERRNO = 4095
FDNAME_MAX = 255  # systemd's longest descriptor name


def admitted(access: str, pid: int, main_pid: int | None, member: Callable[[int], bool]) -> bool:
    """Whether a datagram from `pid` may speak for the service under `notify_access`.

    "exec" is "main": roost runs no process for a service besides its main one. A pid
    of 0 is a sender in another PID namespace, which cannot be told apart from anyone.
    """
    if access == "none" or pid <= 0:
        return False
    if pid == main_pid:
        return True
    return access == "all" and member(pid)


def sometimes(count: int) -> bool:
    """Log the 1st, 2nd, 4th, 8th... of a kind: a flood of them cannot flood the console."""
    return count & (count - 1) == 0


class Notifications:
    """Datagrams on the services' notify sockets, admitted or refused, carried out."""

    def __init__(self, loop: Loop, tracker: Tracker, daemons: Daemons,
                 event: Callable[[Runtime, list[Action]], None]):
        self._loop = loop
        self._tracker = tracker
        self._daemons = daemons
        self._event = event

    def message(self, rt: Runtime, pid: int, fields: dict[str, str] | None,
                fds: list[int] | None = None) -> None:
        """One datagram from `pid` (`fields` None: not a notification): counted, or done.

        Of `fds`, the descriptors it carried, those stored (FDSTORE=1) are taken out.
        """
        if fields is None:
            rt.notify_malformed += 1
            if sometimes(rt.notify_malformed):
                console.say(f"{rt.name}: dropped a datagram on the notify socket that is not a "
                            f"notification (from pid {pid}; {rt.notify_malformed} so far)")
            return
        if not admitted(rt.config.notify_access, pid, rt.machine.pid,
                        lambda p: self._tracker.belongs(rt.name, p)):
            rt.notify_refused += 1
            if sometimes(rt.notify_refused):
                access = rt.config.notify_access
                who = "a process" if access == "all" else "the main process"
                console.say(f"{rt.name}: refused a notification from pid {pid}: not {who} of "
                            f"the service (notify_access = \"{access}\"; "
                            f"{rt.notify_refused} refused so far)")
            return
        self.fields(rt, fields, fds)

    def fields(self, rt: Runtime, fields: dict[str, str], fds: list[int] | None = None) -> None:
        """An admitted notification's fields, in systemd's order, as the machine's events.

        BARRIER=1 needs nothing more: its descriptor is closed once the datagram is done.
        """
        m, notes, now = rt.machine, rt.notes, self._loop.now()
        if fields.get("FDSTOREREMOVE") == "1":
            name = self._fd_name(rt, fields)
            if name is not None:
                rt.flush_fd_store(name)
        if fields.get("FDSTORE") == "1" and fds:
            name = self._fd_name(rt, fields)
            if name is not None:
                self._store(rt, name, fds)
        if "MAINPID" in fields:
            pid = self._number(rt, fields, "MAINPID", MAX_PIDS, low=1)
            if pid is not None:
                self._main_pid(rt, pid)
        if fields.get("STOPPING") == "1":
            notes.phase, notes.phase_since = "stopping", now
        if fields.get("RELOADING") == "1":
            # MONOTONIC_USEC: when the reload began, on the clock roost's loop reads.
            began = self._number(rt, fields, "MONOTONIC_USEC", MAX_USEC) \
                if "MONOTONIC_USEC" in fields else None
            notes.phase = "reloading"
            notes.phase_since = now if began is None else min(began / 1e6, now)
        if fields.get("READY") == "1":
            if notes.phase == "reloading":
                notes.phase = ""
            self._event(rt, m.ready(now))
        if "STATUS" in fields:
            rt.status_text = fields["STATUS"]
        if "ERRNO" in fields:
            notes.errno = self._number(rt, fields, "ERRNO", MAX_ERRNO)
        if "EXIT_STATUS" in fields:
            notes.exit_status = self._number(rt, fields, "EXIT_STATUS", 255)
        if fields.get("WATCHDOG") == "1":
            self._event(rt, m.keepalive(now))
        elif fields.get("WATCHDOG") == "trigger":
            self._event(rt, m.timer(machine.T_WATCHDOG, now))
        if "WATCHDOG_USEC" in fields:
            usec = self._number(rt, fields, "WATCHDOG_USEC", MAX_USEC)
            if usec is not None:
                self._event(rt, m.keepalive(now, usec / 1e6))
        if "EXTEND_TIMEOUT_USEC" in fields:
            usec = self._number(rt, fields, "EXTEND_TIMEOUT_USEC", MAX_USEC)
            if usec is not None:
                self._event(rt, m.extend(usec / 1e6, now))

    def _fd_name(self, rt: Runtime, fields: dict[str, str]) -> str | None:
        """FDNAME= (systemd's default "stored"), or None for one LISTEN_FDNAMES cannot carry."""
        name = fields.get("FDNAME", "stored")
        if 0 < len(name) <= FDNAME_MAX and name.isascii() and name.isprintable() and \
                ":" not in name:
            return name
        self._ignored(rt, f"FDNAME={name[:40]!r} ignored: 1 to {FDNAME_MAX} printable "
                      "characters, no ':'")
        return None

    def _store(self, rt: Runtime, name: str, fds: list[int]) -> None:
        """FDSTORE=1: keep what fits under fd_store_max, taking it out of `fds`."""
        room = rt.config.fd_store_max - len(rt.fd_store)
        taken = fds[:max(room, 0)]
        del fds[:len(taken)]
        rt.fd_store += [(name, fd) for fd in taken]
        if fds:
            self._ignored(rt, f"FDSTORE=1: {len(fds)} descriptors not kept (fd_store_max = "
                          f"{rt.config.fd_store_max}, {len(rt.fd_store)} stored)")

    def _main_pid(self, rt: Runtime, pid: int) -> None:
        """MAINPID=: taken only for a live process of the service, pinned before it counts."""
        m = rt.machine
        if pid == m.pid or m.state not in (machine.STARTING, machine.UP):
            return
        if not self._tracker.belongs(rt.name, pid):
            self._ignored(rt, f"MAINPID={pid} refused: not a process of {rt.name}")
        elif rt.child is not None and rt.child.pid == pid:
            # Back to the process roost started, whose exit roost sees anyway.
            self._tracker.unwatch_main(rt.name)
            self._event(rt, m.main_changed(pid, self._loop.now()))
        elif self._daemons.follow(rt, pid):
            console.say(f"{rt.name}: main process is now {pid} (MAINPID)")

    def _number(self, rt: Runtime, fields: dict[str, str], key: str, high: int,
                low: int = 0) -> int | None:
        value = fields[key]
        if len(value) <= 20 and value.isascii() and value.isdigit() and \
                low <= int(value) <= high:
            return int(value)
        self._ignored(rt, f"{key}={value[:40]!r} ignored: not a whole number from {low} to "
                      f"{high}")
        return None

    def _ignored(self, rt: Runtime, what: str) -> None:
        rt.notes.ignored += 1
        if sometimes(rt.notes.ignored):
            console.say(f"{rt.name}: {what} ({rt.notes.ignored} fields ignored so far)")
