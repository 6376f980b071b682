"""PID 1 of a container: the main command, the signals forwarded to it, the sweep after it.

roost starts the command, forwards every signal it receives to it, reaps every
process that ends up re-parented to it, and exits with the command's status.
When the command exits while other processes remain, they get TERM and CONT,
roost waits until the last one is gone or the grace period ends, then KILLs
what is left.
"""

import _signal
import os

from roost.core import sigs
from roost.kernel import console
from roost.kernel.spawn import NEW_GROUP, Command, spawn

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from roost.container.options import RunOptions
    from roost.core.exits import ExitStatus
    from roost.kernel.loop import Loop
    from roost.kernel.reaper import Reaper
    from roost.kernel.spawn import Child

# After SIGKILL, how long to wait for the killed to be reaped (a process in
# uninterruptible sleep may never go) before exiting anyway.
KILL_WAIT = 2.0




class ContainerInit:
    """The main child, the signals forwarded to it, and the sweep after it exits."""

    def __init__(self, opts: "RunOptions", loop: "Loop", reaper: "Reaper"):
        self.opts = opts
        self.loop = loop
        self.reaper = reaper
        self.pid1 = os.getpid() == 1
        self.child: Child | None = None
        self.status: ExitStatus | None = None
        self.exec_error: str | None = None
        self.exit_code: int | None = None
        self.deadline: float | None = None
        self._swept = False
        # The terminal handed to the main child (its foreground group), taken back at its end.
        self.tty: int | None = None
        # Socket-activation fds, found before roost opened any descriptor of its own.
        self.listen_fds: list[int] = []
        # Sidecar services must stop, in order, before the sweep signals whatever is
        # left: given the sweep as a continuation, this runs first.
        self.before_sweep: Callable[[Callable[[], None]], None] | None = None

    # -- start -------------------------------------------------------------

    def start(self, extra_env: "dict[str, str] | None" = None) -> None:
        """Spawn the main command, with the terminal and socket-activation fds it is owed."""
        env = dict(os.environ)
        if extra_env:
            env.update(extra_env)
        fds = {0: 0, 1: 1, 2: 2}
        listen = self.listen_fds
        self.listen_fds = []
        for fd in listen:
            fds[fd] = fd
        tty = self.tty = _foreground_tty()
        command = Command(self.opts.command, env=env, fds=fds, session=NEW_GROUP,
                          foreground_tty=tty, env_pid_var="LISTEN_PID" if listen else None)
        self.child = spawn(command)
        self.reaper.watch(self.child.pid, self._main_exited)
        console.debug(f"started {self.child.pid}: {_quote(self.opts.command)}")
        # The sockets now belong to the child; roost keeps no fd it passed on.
        for fd in listen:
            try:
                os.close(fd)
            except OSError:
                pass

    # -- signals -----------------------------------------------------------

    def on_signal(self, signum: int) -> None:
        """Forward a signal to the main child, or reap on SIGCHLD."""
        if signum == _signal.SIGCHLD:
            self.reaper.drain()
            self._check_done()
            return
        if self.child is None or self.status is not None:
            console.debug(f"{sigs.name(signum)} received with no main child: not forwarded")
            return
        target = self.opts.signal_map.get(signum, signum)
        if target == 0:
            console.debug(f"{sigs.name(signum)} dropped (--signal-map)")
        else:
            self._send_main(target)
        if signum == _signal.SIGTERM and self.deadline is None:
            self._arm_deadline()

    def _send_main(self, signum: int) -> None:
        assert self.child is not None
        if self.opts.group:
            # The group's id is the child's PID, reserved while the child is unreaped.
            try:
                os.killpg(self.child.pid, signum)
            except ProcessLookupError:
                pass
            console.debug(f"forwarded {sigs.name(signum)} to group {self.child.pid}")
        else:
            self.child.signal(signum)
            console.debug(f"forwarded {sigs.name(signum)} to {self.child.pid}")

    def _arm_deadline(self) -> None:
        self.deadline = self.loop.now() + self.opts.grace
        self.loop.call_at(self.deadline, self._deadline_passed)

    def _deadline_passed(self) -> None:
        if self.status is None and self.child is not None:
            console.say(f"{self.child.pid} still running {self.opts.grace:g}s after TERM: killing")
            self._send_main(_signal.SIGKILL)
        self._kill_rest(_signal.SIGKILL)
        self.loop.call_later(KILL_WAIT, self._give_up_waiting)

    def _give_up_waiting(self) -> None:
        if self.status is not None and self.exit_code is None:
            console.say("processes left after SIGKILL (uninterruptible sleep?): exiting anyway")
            self._finish()

    # -- exits -------------------------------------------------------------

    def on_orphan(self, pid: int, status: "ExitStatus") -> None:
        """Log a reaped orphan (installed with -v only)."""
        console.say(f"reaped {pid} ({status.describe()})")

    def _main_exited(self, pid: int, status: "ExitStatus") -> None:
        assert self.child is not None
        self.status = status
        known, error = self.child.exec_result()
        if known and error:
            self.exec_error = error
            console.say(error)
        self.child.close()
        if self.tty is not None:
            # Whoever runs roost from a script gets its terminal back in the foreground:
            # a read or (with TOSTOP) a write after roost would otherwise stop it.
            # roost is in the background now, hence the ignored SIGTTOU.
            try:
                os.tcsetpgrp(self.tty, os.getpgrp())
            except OSError:
                pass
        console.debug(f"main child {pid} {status.describe()}")
        if self.before_sweep is not None:
            self.before_sweep(self._sweep)
        else:
            self._sweep()

    def _sweep(self) -> None:
        """TERM and CONT to everything left, under the grace deadline; done when none is left."""
        self._swept = True
        if self.reaper.has_children():
            self._kill_rest(_signal.SIGTERM)
            self._kill_rest(_signal.SIGCONT)
            if self.deadline is None:
                self._arm_deadline()
        else:
            self._finish()

    def _kill_rest(self, signum: int) -> None:
        """Signal every process left: all of the namespace as its PID 1, else the tracked."""
        if self.pid1:
            try:
                os.kill(-1, signum)
            except ProcessLookupError:
                pass
            console.debug(f"sent {sigs.name(signum)} to every process left")
            return
        from roost.kernel import proc  # noqa: PLC0415 - lazy (start-up): leftovers only

        for st in proc.descendants(os.getpid()):
            fd = proc.pin(st)
            if fd is None:
                continue
            try:
                _signal.pidfd_send_signal(fd, signum)
                console.debug(f"sent {sigs.name(signum)} to {st.pid} ({st.comm})")
            except ProcessLookupError:
                pass
            finally:
                os.close(fd)

    def _check_done(self) -> None:
        if (self.status is not None and self.exit_code is None and self.reaper.childless
                and self._swept):
            self._finish()

    def _finish(self) -> None:
        assert self.status is not None
        code = self.status.shell_code()
        self.exit_code = self.opts.remap.get(code, code)
        self.loop.stop()


def _foreground_tty() -> "int | None":
    """Return 0 if stdin is a terminal whose foreground group is roost's (the child takes it)."""
    try:
        if os.isatty(0) and os.tcgetpgrp(0) == os.getpgrp():
            return 0
    except OSError:
        pass
    return None


def _quote(argv: "list[str]") -> str:
    """A command line on one line: odd arguments (spaces, newlines, empty) in Python quotes."""
    return " ".join(a if a and a.isprintable() and " " not in a and "'" not in a else repr(a)
                    for a in argv)
