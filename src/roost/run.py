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
    from collections.abc import Callable, Mapping

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


# The longest grace accepted (11.6 days): no container stops that slowly, and a
# bound keeps the deadline a real instant.
MAX_GRACE = 1_000_000.0

# Options that take no value, by their one-letter names (they may be bundled: -vg).
_FLAGS = "vgh"


def _pairs(text: str, parse: Callable[[str], int]) -> list[tuple[int, int]]:
    pairs = []
    for item in text.split(","):
        left, sep, right = item.partition(":")
        if not sep:
            raise UsageError(f"expected FROM:TO, got {item!r}")
        pairs.append((parse(left), parse(right)))
    return pairs


def _code(text: str) -> int:
    digits = text.strip()
    # ASCII only: str.isdigit() also accepts characters like "²" that int() refuses.
    if not (digits.isascii() and digits.isdigit()) or int(digits) > 255:
        raise UsageError(f"--remap-exit: not an exit status (0-255): {text!r}")
    return int(text)


def _signal_number(text: str) -> int:
    try:
        return sigs.number(text)
    except ValueError as exc:
        raise UsageError(f"--signal-map: {exc}") from None


def _signal_map(text: str) -> list[tuple[int, int]]:
    pairs = _pairs(text, _signal_number)
    for source, _ in pairs:
        if source not in FORWARDED:
            what = sigs.name(source) if source else "0"
            raise UsageError(f"--signal-map: {what} is never forwarded, so cannot be mapped")
    return pairs


def _grace(text: str) -> float:
    try:
        grace = float(text)
    except ValueError:
        raise UsageError(f"--grace: not a number of seconds: {text!r}") from None
    # Also refuses NaN and infinity: the deadline must be a real instant.
    if not 0 <= grace <= MAX_GRACE:
        raise UsageError(f"--grace: must be from 0 to {MAX_GRACE:g} seconds, got {text!r}")
    return grace


def parse(args: list[str]) -> RunOptions:
    """Parse `roost run` arguments; raise UsageError with a one-line reason."""
    opts = RunOptions()
    args = list(args)
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
        if arg[1] != "-" and len(arg) > 2 and all(c in _FLAGS for c in arg[1:]):
            args[i:i] = [f"-{c}" for c in arg[2:]]
            arg = arg[:2]
        name, eq, inline = arg.partition("=")
        if eq and name in ("-v", "--verbose", "-g", "--group", "-h", "--help"):
            raise UsageError(f"{name} takes no value")

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
            opts.signal_map.update(_signal_map(value()))
        elif name == "--grace":
            opts.grace = _grace(value())
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
# that roost, once it has handed the terminal to its child, is never stopped; SIGPIPE
# stays blocked, as roost's own writes to a closed stderr raise it.
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
        # The terminal handed to the main child (its foreground group), taken back at its end.
        self.tty: int | None = None
        # Socket-activation fds, found before roost opened any descriptor of its own.
        self.listen_fds: list[int] = []
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

    def on_orphan(self, pid: int, status: ExitStatus) -> None:
        """Log a reaped orphan (installed with -v only)."""
        console.say(f"reaped {pid} ({status.describe()})")

    def _main_exited(self, pid: int, status: ExitStatus) -> None:
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


def _quote(argv: list[str]) -> str:
    """A command line on one line: odd arguments (spaces, newlines, empty) in Python quotes."""
    return " ".join(a if a and a.isprintable() and " " not in a and "'" not in a else repr(a)
                    for a in argv)


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def _open_stdio() -> None:
    """Put /dev/null on a closed fd 0, 1 or 2, before roost opens anything of its own.

    Otherwise roost's epoll or signal pipe would take the number, and the child would
    inherit it as its stdin, stdout or stderr.
    """
    for fd in (0, 1, 2):
        if not _is_open(fd):
            os.open(os.devnull, os.O_RDWR)  # the lowest free number: this one


def _listen_fds(env: Mapping[str, str]) -> list[int]:
    """The socket-activation fds passed to roost itself (LISTEN_PID is roost's PID), if open.

    Call it before roost opens any descriptor, or it would count roost's own.
    """
    if env.get("LISTEN_PID") != str(os.getpid()):
        return []
    try:
        count = int(env.get("LISTEN_FDS", "0"))
    except ValueError:
        return []
    # Bounded: a nonsense count must not make roost probe a million descriptors.
    return [fd for fd in range(3, 3 + max(0, min(count, 4096))) if _is_open(fd)]


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
    _open_stdio()
    listen = _listen_fds(os.environ)
    if os.getpid() != 1:
        _become_subreaper()
    loop = Loop()
    reaper = Reaper()
    init = ContainerInit(opts, loop, reaper)
    init.listen_fds = listen
    if console.verbose():  # else an orphan is only reaped: a storm builds nothing per exit
        reaper.on_orphan = init.on_orphan
    if opts.config is not None:
        from roost import sidecars  # noqa: PLC0415

        return sidecars.run(opts, loop, reaper, init)
    loop.handle_signals(HANDLED, init.on_signal, ignore=IGNORED)
    try:
        init.start()
    except SpawnError as exc:
        console.say(str(exc))
        return opts.remap.get(exc.exit_code, exc.exit_code)
    os.chdir("/")
    loop.run()
    assert init.exit_code is not None
    return init.exit_code
