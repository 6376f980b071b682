"""`roost run -- CMD`: the composition root of the container role.

It opens what the child is owed before roost opens anything (stdio, the
socket-activation fds), builds the reactor and the reaper, and runs the init
(init.py) alone, or with the sidecar services of `-c DIR` (sidecars.py).

This path is timed on every container start, so it imports only the reactor,
the reaper and the spawner (tests/ns/test_run_startup.py holds it to that).
"""

import posix
import sys

from roost.container.init import ContainerInit
from roost.container.options import HANDLED, IGNORED, USAGE, UsageError, parse
from roost.kernel import console
from roost.kernel.loop import Loop
from roost.kernel.reaper import Reaper
from roost.kernel.spawn import SpawnError, environ

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

    from roost.container.options import RunOptions
    from roost.kernel.accounts import Account
    from roost.kernel.ready import ReadyFile


def _is_open(fd: int) -> bool:
    try:
        posix.fstat(fd)
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
            posix.open("/dev/null", posix.O_RDWR)  # the lowest free number: this one


def _listen_fds(env: "Mapping[str, str]") -> "list[int]":
    """The socket-activation fds passed to roost itself (LISTEN_PID is roost's PID), if open.

    Call it before roost opens any descriptor, or it would count roost's own.
    """
    if env.get("LISTEN_PID") != str(posix.getpid()):
        return []
    try:
        count = int(env.get("LISTEN_FDS", "0"))
    except ValueError:
        return []
    # Bounded: a nonsense count must not make roost probe a million descriptors.
    return [fd for fd in range(3, 3 + max(0, min(count, 4096))) if _is_open(fd)]


def _account(spec: str) -> "Account":
    """Resolve `--user USER[:GROUP]`; raise UsageError naming what the system lacks."""
    from roost.kernel import accounts  # noqa: PLC0415 - lazy (start-up): --user only

    user, _, group = spec.partition(":")
    try:
        return accounts.resolve(user, group or None)
    except accounts.UnknownAccount as exc:
        raise UsageError(f"--user: {exc}") from None


def _readiness(opts: "RunOptions") -> "tuple[int | None, ReadyFile | None]":
    """--ready-fd and --ready-file, checked before anything starts; raise UsageError."""
    from roost.kernel import ready  # noqa: PLC0415 - lazy (start-up): --ready-fd and --ready-file only

    try:
        fd = ready.ready_fd(opts.ready_fd) if opts.ready_fd is not None else None
        file = ready.ReadyFile(opts.ready_file) if opts.ready_file is not None else None
    except ready.Refused as exc:
        raise UsageError(str(exc)) from None
    return fd, file


def _usage_error(exc: "UsageError") -> int:
    # One line: in a container's log, the reason is all anyone reads.
    sys.stderr.write(f"roost run: {exc} (roost run --help for usage)\n")
    return 2


def main(args: "list[str]") -> int:
    """Run `roost run`; return the exit status roost should exit with."""
    try:
        opts = parse(args)
    except UsageError as exc:
        if str(exc):
            return _usage_error(exc)
        sys.stdout.write(USAGE)
        return 0
    console.configure(verbose=opts.verbose)
    if console.verbose():
        from roost import early  # noqa: PLC0415 - lazy (start-up): loaded already, named for -v

        console.say("signal window closed: the roost launcher blocked signals before the "
                    "interpreter started" if early.LAUNCHER_BLOCKED else
                    "signal window open: not started by the roost launcher with GNU env, "
                    "a signal sent before the interpreter ran roost is lost")
    _open_stdio()
    listen = _listen_fds(environ())
    # After the fds are counted: the account lookup may open files of its own (NSS).
    try:
        account = _account(opts.user) if opts.user is not None else None
    except UsageError as exc:
        return _usage_error(exc)
    targets: tuple[int | None, ReadyFile | None] = (None, None)
    if opts.ready_fd is not None or opts.ready_file is not None:
        try:
            targets = _readiness(opts)
        except UsageError as exc:
            return _usage_error(exc)
    if posix.getpid() != 1:
        from roost.kernel import prctl  # noqa: PLC0415 - lazy (start-up): not needed as PID 1

        prctl.become_subreaper("orphans will not come back to roost")
    loop = Loop()
    reaper = Reaper()
    init = ContainerInit(opts, loop, reaper)
    init.listen_fds = listen
    init.account = account
    init.ready_fd, init.ready_file = targets
    if console.verbose():  # else an orphan is only reaped: a storm builds nothing per exit
        reaper.on_orphan = init.on_orphan
    if opts.config is not None:
        from roost.container import sidecars  # noqa: PLC0415 - lazy (start-up): `-c` only

        try:
            return sidecars.run(opts, loop, reaper, init)
        finally:
            init.close()
    loop.handle_signals(HANDLED, init.on_signal, ignore=IGNORED)
    try:
        init.start()
    except SpawnError as exc:
        console.say(str(exc))
        if opts.restart is not None:
            console.say("not restarting: the command cannot be started")
        init.close()
        return opts.remap.get(exc.exit_code, exc.exit_code)
    posix.chdir("/")
    loop.run()
    init.close()
    assert init.exit_code is not None
    return init.exit_code
