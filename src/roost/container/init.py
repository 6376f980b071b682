"""PID 1 of a container: the main command, the signals forwarded to it, the sweep after it.

roost starts the command, forwards every signal it receives to it, reaps every
process that ends up re-parented to it, and exits with the command's status.
When the command exits while other processes remain, they get TERM and CONT,
roost waits until the last one is gone or the grace period ends, then KILLs
what is left. With `--restart`, a command that exits is started again after a
back-off instead, until a stop signal, the policy or the limit says no more;
with `--pre-stop-delay`, the first TERM reaches the command only after a pause.
"""

import _signal
import posix

from roost.container.options import STOP_SIGNALS
from roost.core import sigs
from roost.core.exits import ExitStatus
from roost.kernel import console
from roost.kernel.spawn import NEW_GROUP, Command, SpawnError, environ, spawn

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from roost.container.options import RunOptions
    from roost.kernel.accounts import Account
    from roost.kernel.loop import Loop, Timer
    from roost.kernel.ready import ReadyFile
    from roost.kernel.reaper import Reaper
    from roost.kernel.spawn import Child

# After SIGKILL, how long to wait for the killed to be reaped (a process in
# uninterruptible sleep may never go) before exiting anyway.
KILL_WAIT = 2.0
# A main child that ran this long (or as long as the longest restart delay, if more) was
# no crash loop: its restart waits the first delay again.
STEADY_RUN = 10.0


class ContainerInit:
    """The main child, the signals forwarded to it, and the sweep after it exits."""

    def __init__(self, opts: "RunOptions", loop: "Loop", reaper: "Reaper"):
        self.opts = opts
        self.loop = loop
        self.reaper = reaper
        self.pid1 = posix.getpid() == 1
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
        # Whom the main child runs as (--user), resolved before anything started.
        self.account: Account | None = None
        # A stop signal came: the main child is never started again.
        self.stopping = False
        # The first TERM's forwarding, held back by --pre-stop-delay.
        self.drain: Timer | None = None
        # The restart to come, while the main child is down and backing off.
        self.backoff: Timer | None = None
        self.restarts = 0
        self.next_delay = opts.restart_delay or 0.0
        self.started_at = 0.0
        # --ready-fd and --ready-file: told once the main child runs (kernel/ready.py).
        self.ready_fd: int | None = None
        self.ready_file: ReadyFile | None = None

    # -- start -------------------------------------------------------------

    def start(self) -> None:
        """Spawn the main command as its account, with the terminal and fds it is owed."""
        env = environ()
        account = self.account
        uid: int | None = None
        gid: int | None = None
        groups: list[int] | None = None
        if account is not None:
            uid, gid, groups = account.uid, account.gid, account.groups
            if account.env:
                env.update(account.env)
            elif uid is not None:
                # A uid with no passwd entry: no name to give, and root's HOME is not its
                # own ("/" as Docker gives it).
                env.pop("USER", None)
                env.pop("LOGNAME", None)
                env["HOME"] = "/"
        fds = {0: 0, 1: 1, 2: 2}
        listen = self.listen_fds
        for fd in listen:
            fds[fd] = fd
        tty = self.tty = _foreground_tty()
        command = Command(self.opts.command, env=env, fds=fds, session=NEW_GROUP,
                          foreground_tty=tty, env_pid_vars=("LISTEN_PID",) if listen else (),
                          uid=uid, gid=gid, groups=groups,
                          no_new_privs=self.opts.no_new_privs)
        self.child = spawn(command)
        self.status = None
        self.exec_error = None
        self.started_at = self.loop.now()
        self.reaper.watch(self.child.pid, self._main_exited)
        console.debug(f"started {self.child.pid}: {_quote(self.opts.command)}")
        if self.ready_fd is not None or self.ready_file is not None:
            self._ready(True)
        if self.opts.restart is not None:
            return  # each start of the command is owed the sockets: roost keeps them
        # The sockets now belong to the child; roost keeps no fd it passed on.
        self.listen_fds = []
        for fd in listen:
            try:
                posix.close(fd)
            except OSError:
                pass

    def _ready(self, running: bool) -> None:
        """The main child runs (a newline on --ready-fd, the --ready-file made), or not."""
        if running and self.ready_fd is not None:
            from roost.kernel import ready  # noqa: PLC0415 - lazy (start-up): --ready-fd only

            ready.signal_fd(self.ready_fd)
            self.ready_fd = None
        if self.ready_file is not None and not (running and self.stopping):
            pid = self.child.pid if self.child is not None else 0
            self.ready_file.set(running, f"running: pid {pid}")

    def close(self) -> None:
        """On leaving: the ready file goes, a --ready-fd never written is closed."""
        if self.ready_file is not None:
            self.ready_file.close()
            self.ready_file = None
        if self.ready_fd is not None:
            posix.close(self.ready_fd)
            self.ready_fd = None

    # -- signals -----------------------------------------------------------

    def on_signal(self, signum: int) -> None:
        """Forward a signal to the main child, or reap on SIGCHLD."""
        if signum == _signal.SIGCHLD:
            self.reaper.drain()
            self._check_done()
            return
        if signum in STOP_SIGNALS:
            self.stopping = True
            self._ready(False)
            if self.backoff is not None:
                self.backoff.cancel()
                self.backoff = None
                console.say(f"{sigs.name(signum)} during the restart delay: not restarting")
                self._end()
                return
        if self.child is None or self.status is not None:
            console.debug(f"{sigs.name(signum)} received with no main child: not forwarded")
            return
        if signum == _signal.SIGTERM:
            if self.drain is not None:
                # A second TERM: the caller will not wait for the drain.
                self.drain.cancel()
                self.drain = None
            elif self.opts.pre_stop_delay and self.deadline is None:
                delay = self.opts.pre_stop_delay
                console.say(f"SIGTERM received: forwarding it in {delay:g}s (--pre-stop-delay)")
                self.drain = self.loop.call_later(delay, self._drained)
                return
        self._forward(signum)

    def _forward(self, signum: int) -> None:
        target = self.opts.signal_map.get(signum, signum)
        if target == 0:
            console.debug(f"{sigs.name(signum)} dropped (--signal-map)")
        else:
            self._send_main(target)
        if signum == _signal.SIGTERM and self.deadline is None:
            self._arm_deadline()

    def _drained(self) -> None:
        self.drain = None
        if self.child is not None and self.status is None:
            self._forward(_signal.SIGTERM)

    def _send_main(self, signum: int) -> None:
        assert self.child is not None
        if self.opts.group:
            # The group's id is the child's PID, reserved while the child is unreaped.
            try:
                posix.killpg(self.child.pid, signum)
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
        self._ready(False)
        if self.drain is not None:
            self.drain.cancel()
            self.drain = None
        if self.tty is not None:
            # Whoever runs roost from a script gets its terminal back in the foreground:
            # a read or (with TOSTOP) a write after roost would otherwise stop it.
            # roost is in the background now, hence the ignored SIGTTOU.
            try:
                posix.tcsetpgrp(self.tty, posix.getpgrp())
            except OSError:
                pass
        console.debug(f"main child {pid} {status.describe()}")
        if self._restart_wanted(status):
            self._back_off(pid, status)
        else:
            self._end()

    def _end(self) -> None:
        """The main child is down for good: the sidecars stop, then the sweep."""
        if self.before_sweep is not None:
            self.before_sweep(self._sweep)
        else:
            self._sweep()

    # -- restarts ----------------------------------------------------------

    def _restart_wanted(self, status: "ExitStatus") -> bool:
        policy = self.opts.restart
        if policy is None or self.stopping:
            return False
        if self.exec_error is not None:
            console.say("not restarting: the command cannot be started")
            return False
        if policy == "on-failure" and status.success:
            return False
        limit = self.opts.restart_limit
        if limit is not None and self.restarts >= limit:
            console.say(f"not restarting: --restart-limit {limit} reached")
            return False
        return True

    def _back_off(self, pid: int, status: "ExitStatus") -> None:
        """Arm the restart: the delay doubles with each quick exit, up to the maximum."""
        first = self.opts.restart_delay or 0.0
        longest = self.opts.restart_max_delay or 0.0
        if self.loop.now() - self.started_at >= max(STEADY_RUN, longest):
            self.next_delay = first
        delay = self.next_delay
        self.next_delay = min(longest, delay * 2)
        self.child = None
        console.say(f"main child {pid} {status.describe()}: restart {self.restarts + 1} "
                    f"in {delay:g}s")
        self.backoff = self.loop.call_later(delay, self._restart)

    def _restart(self) -> None:
        self.backoff = None
        self.restarts += 1
        try:
            self.start()
        except SpawnError as exc:
            console.say(str(exc))
            console.say("not restarting: the command cannot be started")
            self.status = ExitStatus(code=exc.exit_code)
            self._end()

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
                posix.kill(-1, signum)
            except ProcessLookupError:
                pass
            console.debug(f"sent {sigs.name(signum)} to every process left")
            return
        from roost.kernel import proc  # noqa: PLC0415 - lazy (start-up): leftovers only

        for st in proc.descendants(posix.getpid()):
            fd = proc.pin(st)
            if fd is None:
                continue
            try:
                _signal.pidfd_send_signal(fd, signum)
                console.debug(f"sent {sigs.name(signum)} to {st.pid} ({st.comm})")
            except ProcessLookupError:
                pass
            finally:
                posix.close(fd)

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
        if posix.isatty(0) and posix.tcgetpgrp(0) == posix.getpgrp():
            return 0
    except OSError:
        pass
    return None


def _quote(argv: "list[str]") -> str:
    """A command line on one line: odd arguments (spaces, newlines, empty) in Python quotes."""
    return " ".join(a if a and a.isprintable() and " " not in a and "'" not in a else repr(a)
                    for a in argv)
