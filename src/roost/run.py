"""`roost run -- CMD`: PID 1 of a container.

roost starts CMD, forwards every signal it receives to it, reaps every process
that ends up re-parented to it, and exits with CMD's status. When CMD exits
while other processes remain, they get TERM and CONT, roost waits until the
last one is gone or the grace period ends, then KILLs what is left.

This path is timed on every container start, so it imports only the reactor,
the reaper and the spawner; the argument parser is written by hand because
`argparse` alone costs more than the interpreter's start-up.
"""

from __future__ import annotations

import _signal
import os
import sys

from roost import console, sigs
from roost.loop import Loop
from roost.reaper import Reaper
from roost.spawn import NEW_GROUP, Command, SpawnError, spawn

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from roost.exits import ExitStatus
    from roost.spawn import Child

USAGE = """\
usage: roost run [options] -- COMMAND [ARG...]

Run COMMAND as the main process of a container: forward signals to it, reap
every orphan, exit with its status (128+N if signal N killed it).

options:
  -v, --verbose          log each forwarded signal and each reaped process
  -g, --group            forward signals to COMMAND's process group
  --signal-map MAP       rewrite forwarded signals: TERM:QUIT,USR1:0 (0 drops)
  --grace SECONDS        wait this long for processes to exit after TERM (5)
  --remap-exit N:M[,..]  exit with M when COMMAND's status is N
  -c, --config DIR       also supervise the services in DIR (sidecars)
  --after SERVICE        start COMMAND once SERVICE is ready (repeatable)
  --control ADDR         control socket for the sidecars (path or @abstract)
"""

# After SIGKILL, how long to wait for the killed to be reaped (a process in
# uninterruptible sleep may never go) before exiting anyway.
KILL_WAIT = 2.0


class UsageError(Exception):
    """A bad command line; the message says what is wrong."""


class RunOptions:
    """The parsed command line of `roost run`."""

    __slots__ = ("after", "command", "config", "control", "grace", "group", "remap",
                 "signal_map", "verbose")

    def __init__(self) -> None:
        self.verbose = False
        self.group = False
        self.signal_map: dict[int, int] = {}
        self.grace = 5.0
        self.remap: dict[int, int] = {}
        self.config: str | None = None
        self.after: list[str] = []
        self.control: str | None = None
        self.command: list[str] = []


def _pairs(text: str, parse: object) -> list[tuple[int, int]]:
    pairs = []
    for item in text.split(","):
        left, sep, right = item.partition(":")
        if not sep:
            raise UsageError(f"expected FROM:TO, got {item!r}")
        pairs.append((parse(left), parse(right)))  # type: ignore[operator]
    return pairs


def _code(text: str) -> int:
    if not text.strip().isdigit() or int(text) > 255:
        raise UsageError(f"not an exit status (0-255): {text!r}")
    return int(text)


def _signal_number(text: str) -> int:
    try:
        return sigs.number(text)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def parse(args: list[str]) -> RunOptions:
    """Parse `roost run` arguments; raise UsageError with a one-line reason."""
    opts = RunOptions()
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            opts.command = args[i:]
            break
        if not arg.startswith("-") or arg == "-":
            opts.command = args[i - 1 :]
            break
        name, eq, inline = arg.partition("=")

        def value(name: str = name, eq: str = eq, inline: str = inline) -> str:
            nonlocal i
            if eq:
                return inline
            if i >= len(args):
                raise UsageError(f"{name} needs a value")
            i += 1
            return args[i - 1]

        if name in ("-v", "--verbose"):
            opts.verbose = True
        elif name in ("-g", "--group"):
            opts.group = True
        elif name == "--signal-map":
            opts.signal_map.update(_pairs(value(), _signal_number))
        elif name == "--grace":
            text = value()
            try:
                opts.grace = float(text)
            except ValueError:
                raise UsageError(f"--grace: not a number of seconds: {text!r}") from None
            if not opts.grace >= 0:
                raise UsageError("--grace must be 0 or more")
        elif name == "--remap-exit":
            opts.remap.update(_pairs(value(), _code))
        elif name in ("-c", "--config"):
            opts.config = value()
        elif name == "--after":
            opts.after.append(value())
        elif name == "--control":
            opts.control = value()
        elif name in ("-h", "--help"):
            raise UsageError("")
        else:
            raise UsageError(f"unknown option {arg}")
    if not opts.command:
        raise UsageError("no command given")
    if opts.after and opts.config is None:
        raise UsageError("--after needs -c DIR")
    return opts


# Never forwarded: SIGCHLD is roost's own business; TTIN and TTOU are ignored so
# that roost, once it has handed the terminal to its child, is never stopped.
_NOT_FORWARDED = frozenset({_signal.SIGCHLD, _signal.SIGTTIN, _signal.SIGTTOU, _signal.SIGPIPE})
FORWARDED = sigs.CATCHABLE - _NOT_FORWARDED
HANDLED = FORWARDED | {_signal.SIGCHLD}
IGNORED = (_signal.SIGTTIN, _signal.SIGTTOU)


class ContainerInit:
    """The main child, the signals forwarded to it, and the sweep after it exits."""

    def __init__(self, opts: RunOptions, loop: Loop, reaper: Reaper):
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
        # Sidecar services must stop, in order, before the sweep signals whatever is
        # left: given the sweep as a continuation, this runs first.
        self.before_sweep: Callable[[Callable[[], None]], None] | None = None

    # -- start -------------------------------------------------------------

    def start(self, extra_env: dict[str, str] | None = None) -> None:
        """Spawn the main command, with the terminal and socket-activation fds it is owed."""
        env = dict(os.environ)
        if extra_env:
            env.update(extra_env)
        fds = {0: 0, 1: 1, 2: 2}
        listen = _listen_fds(env)
        for fd in listen:
            fds[fd] = fd
        tty = _foreground_tty()
        command = Command(self.opts.command, env=env, fds=fds, session=NEW_GROUP,
                          foreground_tty=tty, env_pid_var="LISTEN_PID" if listen else None)
        self.child = spawn(command)
        self.reaper.watch(self.child.pid, self._main_exited)
        console.debug(f"started {self.child.pid}: {' '.join(self.opts.command)}")
        # The sockets now belong to the child; roost keeps no fd it passed on.
        for fd in listen:
            os.close(fd)

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

    def on_orphan(self, pid: int, status: ExitStatus) -> None:
        """Log a reaped orphan (verbose only)."""
        console.debug(f"reaped {pid} ({status.describe()})")

    def _main_exited(self, pid: int, status: ExitStatus) -> None:
        assert self.child is not None
        self.status = status
        known, error = self.child.exec_result()
        if known and error:
            self.exec_error = error
            console.say(error)
        self.child.close()
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
        from roost import proc  # noqa: PLC0415 - not needed on the common path

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


def _foreground_tty() -> int | None:
    """Return 0 if stdin is a terminal whose foreground group is roost's (the child takes it)."""
    try:
        if os.isatty(0) and os.tcgetpgrp(0) == os.getpgrp():
            return 0
    except OSError:
        pass
    return None


def _listen_fds(env: dict[str, str]) -> list[int]:
    """The socket-activation fds passed to roost itself (LISTEN_PID is roost's PID)."""
    if env.get("LISTEN_PID") != str(os.getpid()):
        return []
    try:
        count = int(env.get("LISTEN_FDS", "0"))
    except ValueError:
        return []
    return list(range(3, 3 + max(0, count)))


def _become_subreaper() -> None:
    try:
        from roost import linux  # noqa: PLC0415 - ctypes is paid only when not PID 1

        linux.set_child_subreaper()
    except OSError as exc:
        console.say(f"warning: cannot become a child subreaper ({exc.strerror}); "
                    "orphans will not come back to roost")


def main(args: list[str]) -> int:
    """Run `roost run`; return the exit status roost should exit with."""
    try:
        opts = parse(args)
    except UsageError as exc:
        if str(exc):
            sys.stderr.write(f"roost run: {exc}\n{USAGE}")
            return 2
        sys.stdout.write(USAGE)
        return 0
    console.configure(verbose=opts.verbose)
    if os.getpid() != 1:
        _become_subreaper()
    loop = Loop()
    reaper = Reaper()
    init = ContainerInit(opts, loop, reaper)
    reaper.on_orphan = init.on_orphan
    if opts.config is not None:
        from roost import sidecars  # noqa: PLC0415

        return sidecars.run(opts, loop, reaper, init)
    loop.handle_signals(HANDLED, init.on_signal, ignore=IGNORED)
    try:
        init.start()
    except SpawnError as exc:
        console.say(str(exc))
        return exc.exit_code
    os.chdir("/")
    loop.run()
    assert init.exit_code is not None
    return init.exit_code
