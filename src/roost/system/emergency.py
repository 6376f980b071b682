"""The emergency shell: which one, and running it on the console.

roost runs it when nothing of the configuration can start, and before the fatal
action when roost cannot supervise at all: on a machine, the way in for whoever
must repair it.
"""

from __future__ import annotations

import _signal
import os

from roost.core import sigs
from roost.kernel import console, linux

TYPE_CHECKING = False
if TYPE_CHECKING:
    from roost.core.exits import ExitStatus
    from roost.kernel.reaper import Reaper

SULOGIN = ("/sbin/sulogin", "/usr/sbin/sulogin", "/bin/sulogin", "/usr/bin/sulogin")


def shell_argv(configured: list[str] | None, scope: str) -> list[str] | None:
    """The emergency shell to run: the configured one, none (`false`), or the default.

    The default, on a machine only, is sulogin (it asks for root's password) if
    installed, else /bin/sh. In a PID namespace it is none: the console there is the
    host's, and a container's supervisor handles the failure.
    """
    if configured is not None:
        return configured or None
    if scope != linux.MACHINE:
        return None
    for path in SULOGIN:
        if os.access(path, os.X_OK):
            return [path]
    return ["/bin/sh"]


def run(argv: list[str], reaper: Reaper, *, own_console: bool, wait: bool) -> None:
    """Start `argv` in a session of its own; with `wait`, return once it has exited."""
    console.say(f"starting the emergency shell {' '.join(argv)} on the console")
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child only execs
        try:
            _signal.set_wakeup_fd(-1)
            for signum in sigs.CATCHABLE:
                _signal.signal(signum, _signal.SIG_DFL)
            os.setsid()
            # In a PID namespace /dev/console is the host's: the shell gets roost's own 0-2.
            if own_console:
                fd = os.open("/dev/console", os.O_RDWR)
                import fcntl  # noqa: PLC0415 - lazy (child): the shell only
                import termios  # noqa: PLC0415 - lazy (child): the shell only

                try:
                    fcntl.ioctl(fd, termios.TIOCSCTTY, 1)
                except OSError:
                    pass
                for target in (0, 1, 2):
                    os.dup2(fd, target)
            os.closerange(3, 65536)
            _signal.pthread_sigmask(_signal.SIG_SETMASK, ())
            os.execv(argv[0], argv)
        except BaseException:  # noqa: BLE001 - the child must never return into roost
            os._exit(127)
    if not wait:
        reaper.watch(pid, lambda _p, status: console.say(
            f"emergency shell ended ({status.describe()})"))
        return
    done: list[ExitStatus] = []
    reaper.watch(pid, lambda _p, status: done.append(status))
    import time  # noqa: PLC0415 - lazy (start-up): the shell only

    while not done:
        reaper.drain()
        if not done:
            time.sleep(0.1)
    console.say(f"emergency shell ended ({done[0].describe()})")
