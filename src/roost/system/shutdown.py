"""Stage 3: from "every service stopped" to reboot(2), leaving every filesystem clean.

1. TERM and CONT to every process left, then wait until they are gone or
   `kill_timeout` passes; KILL what remains and wait a little more. kill(-1) runs
   in a forked child, so a process in uninterruptible sleep cannot hang PID 1.
   The control socket still answers meanwhile, and service output is still logged.
2. Close what roost itself holds open on disk (service logs); sync (in a child,
   with a deadline); swapoff; unmount in reverse mount order, retrying while it
   makes progress; remount read-only what stays busy; detach loop devices that
   nothing mounts (mounts.Teardown).
3. If a real filesystem is still read-write or holds a loop-mounted root, leave
   it: pivot into a shutdown tmpfs and exec the finale there (pivot.py,
   finale.py), or dracut's /run/initramfs/shutdown when present.
4. reboot(2): POWER_OFF, AUTOBOOT, HALT_SYSTEM, or KEXEC when a kernel is loaded.

As PID 1 of a PID namespace the same sequence runs with the namespace's limits
(see mounts.py); reboot(2) then ends the namespace: its parent sees roost killed
by SIGINT (poweroff, halt) or SIGHUP (reboot).
"""

from __future__ import annotations

import _signal
import os
import time

from roost.kernel import console, linux
from roost.system import mounts, pivot, power

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from roost.control.server import ControlServer
    from roost.core.model import Settings
    from roost.kernel.loop import Loop
    from roost.kernel.reaper import Reaper

KILL_WAIT = 5.0  # after KILL: a process in uninterruptible sleep may never go
SYNC_TIMEOUT = 30.0
COMMANDS = {power.POWEROFF: linux.RB_POWER_OFF, power.REBOOT: linux.RB_AUTOBOOT,
            power.HALT: linux.RB_HALT_SYSTEM, power.KEXEC: linux.RB_KEXEC}
# What the namespace's parent sees when reboot(2) ends the namespace, or roost exits.
EXIT_CODES = {power.POWEROFF: 0, power.HALT: 0, power.REBOOT: 1, power.KEXEC: 1}


class Shutdown:
    """Stage 3; run() does not return on a machine.

    It is given what it works with: the reactor and reaper that still serve, the
    mounts that were there before boot (`baseline`), the settings in force (if
    any were read), a way to close the service logs, and the control servers.
    """

    def __init__(self, loop: Loop, reaper: Reaper, *, baseline: set[int],
                 settings: Settings | None, close_logs: Callable[[], None],
                 servers: list[ControlServer]):
        self.loop = loop
        self.reaper = reaper
        self.baseline = baseline
        self.servers = servers
        self._close_logs = close_logs
        self.scope = linux.pid1_scope() or linux.NAMESPACE
        self.kill_timeout = settings.kill_timeout if settings else 5.0
        self.finale = settings.finale if settings else "auto"

    def _fenced(self, what: str, fn: Callable[[], None]) -> None:
        try:
            fn()
        except BaseException:  # noqa: BLE001 - every step must run, whatever one did
            console.error_trace(f"shutdown step {what!r}")

    def run(self, kind: str) -> int:
        """Carry out stage 3 and end with reboot(2) as `kind` asks."""
        console.say(f"stage 3: {kind}")
        # Leftovers may still write to their service's log pipe while they handle TERM.
        self._fenced("kill", self._kill_phase)
        self._fenced("close logs", self._close_logs)
        self._fenced("close control", self._close_control)
        self._fenced("sync", self._sync)
        if self.scope == linux.MACHINE:
            self._fenced("swapoff", self._swapoff)
        teardown = mounts.Teardown(self.scope, self.baseline)
        self._fenced("unmount", teardown.run)
        console.say(teardown.summary())
        self._fenced("finale", lambda: self._maybe_finale(kind, teardown))
        return self._end(kind)

    # -- processes -------------------------------------------------------------------------

    def _others(self) -> list[str]:
        """Processes left besides PID 1 and kernel threads, as `name(pid)`."""
        found = []
        me = os.getpid()
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == me:
                continue
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    data = f.read()
            except OSError:
                continue
            name = data[data.index(b"(") + 1:data.rindex(b")")].decode(errors="replace")
            fields = data[data.rindex(b")") + 2:].split()
            # Field 9 (flags) has PF_KTHREAD (0x00200000) for kernel threads; zombies wait
            # for the reaper and do not count.
            if int(fields[6]) & 0x00200000 or fields[0] == b"Z":
                continue
            found.append(f"{name}({entry})")
        return found

    def _wait(self, done: Callable[[], bool], timeout: float) -> bool:
        """Run the reactor until `done()` or `timeout`; True if done."""
        end = time.monotonic() + timeout
        while True:
            self.reaper.drain()
            if done():
                return True
            left = end - time.monotonic()
            if left <= 0:
                return False
            self.loop.run_once(min(left, 0.05))

    def _signal_all(self, signum: int) -> None:
        pid = linux.kill_all(signum)
        self.reaper.watch(pid, lambda _pid, _status: None)

    def _kill_phase(self) -> None:
        def gone() -> bool:
            # Not "no children left": a process entered from outside (nsenter, `podman
            # exec`) has its parent there, and is no child of roost's until that parent dies.
            return not self._others()

        left = self._others()
        if not left:
            return
        console.say(f"sending TERM to {len(left)} process{'es' if len(left) > 1 else ''} left: "
                    + " ".join(left[:12]) + (" ..." if len(left) > 12 else ""))
        self._signal_all(_signal.SIGTERM)
        self._signal_all(_signal.SIGCONT)
        if self._wait(gone, self.kill_timeout):
            console.say("every process left has exited")
            return
        left = self._others()
        console.say(f"sending KILL to {len(left)} process{'es' if len(left) > 1 else ''} "
                    f"still running after {self.kill_timeout:g}s: " + " ".join(left[:12])
                    + (" ..." if len(left) > 12 else ""))
        self._signal_all(_signal.SIGKILL)
        if not self._wait(gone, KILL_WAIT):
            console.say("still there after KILL (uninterruptible sleep?): "
                        + " ".join(self._others()[:12]))
        else:
            console.say("every process left has been killed")

    def _close_control(self) -> None:
        for server in self.servers:
            server.close()
        self.servers.clear()

    # -- filesystems -----------------------------------------------------------------------

    def _sync(self) -> None:
        """sync(2) in a child: a dead device must not hang PID 1 forever."""
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child only syncs
            try:
                os.sync()
            finally:
                os._exit(0)
        done: list[bool] = []
        self.reaper.watch(pid, lambda _pid, _status: done.append(True))
        if not self._wait(lambda: bool(done), SYNC_TIMEOUT):
            console.say(f"sync still running after {SYNC_TIMEOUT:g}s: going on")

    def _swapoff(self) -> None:
        done = mounts.swapoff_all()
        if done:
            console.say("swap off: " + " ".join(done))

    def _maybe_finale(self, kind: str, teardown: mounts.Teardown) -> None:
        dirty = teardown.dirty() if self.scope == linux.MACHINE else []
        if self.finale == "never" or (self.finale == "auto" and not dirty):
            return
        if self.finale == "auto":
            console.say("still busy: " + " ".join(m.target for m in dirty)
                        + "; leaving the root for a shutdown tmpfs")
        if pivot.dracut_available():
            pivot.enter_dracut(kind)
            return
        root = pivot.finale_root()
        python, size = pivot.build(root)
        why = pivot.check(root, python, self.reaper)
        if why is not None:
            console.say(f"the shutdown tmpfs cannot run the finale ({why}); "
                        "ending from the old root")
            return
        console.say(f"shutdown tmpfs ready at {root} ({size // 1024} KiB)")
        pivot.enter(kind, python, root)

    # -- the end ---------------------------------------------------------------------------

    def _end(self, kind: str) -> int:
        os.sync()
        command = COMMANDS.get(kind, linux.RB_POWER_OFF)
        if kind == power.KEXEC and not _kexec_loaded():
            console.say("no kexec kernel loaded: rebooting instead")
            command = linux.RB_AUTOBOOT
        if self.scope != linux.MACHINE and command == linux.RB_KEXEC:
            command = linux.RB_AUTOBOOT
        console.say({linux.RB_POWER_OFF: "powering off", linux.RB_AUTOBOOT: "rebooting",
                     linux.RB_HALT_SYSTEM: "halting", linux.RB_KEXEC: "kexec"}[command])
        try:
            linux.reboot(command)
        except OSError as exc:
            console.say(f"reboot(2) failed: {exc.strerror or exc}")
        if self.scope != linux.MACHINE:
            return EXIT_CODES.get(kind, 0)
        if command != linux.RB_HALT_SYSTEM:
            try:
                linux.reboot(linux.RB_HALT_SYSTEM)
            except OSError:
                pass
        while True:  # PID 1 of a machine must not exit
            time.sleep(3600)


def _kexec_loaded() -> bool:
    try:
        with open("/sys/kernel/kexec_loaded") as f:
            return f.read().strip() == "1"
    except OSError:
        return False
