"""Start a child process with exactly the attributes it is owed.

`posix.fork` plus Python in the child, not `subprocess` or `posix.posix_spawn`:
posix_spawn cannot set user, groups, umask, directory or the parent-death
signal, and `subprocess` leaves the blocked signal mask to the child and keeps
a `waitpid` of its own. roost is single-threaded, so fork is safe.

Signals are blocked across fork so that nothing reaches roost's handlers in the
child before its dispositions are reset; the child unblocks everything just
before execve. An exec failure travels back over a close-on-exec pipe: EOF
means the exec happened, bytes mean it did not and say why.
"""

import _signal
import posix
import sys

from roost.core import sigs

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

# Session handling for the child.
NEW_SESSION = "session"  # setsid: its own session and process group (services)
NEW_GROUP = "group"  # its own process group in roost's session (container main child)


class SpawnError(Exception):
    """The command could not be started; the message says why in one line."""

    def __init__(self, message: str, exit_code: int = 127):
        super().__init__(message)
        self.exit_code = exit_code


class Command:
    """What to run and every attribute the child starts with."""

    __slots__ = (
        "argv",
        "cgroup",
        "cwd",
        "env",
        "env_pid_vars",
        "executable",
        "fds",
        "foreground_tty",
        "gid",
        "groups",
        "nice",
        "no_new_privs",
        "nofile",
        "oom_score_adj",
        "pdeathsig",
        "rlimits",
        "session",
        "uid",
        "umask",
    )

    def __init__(self, argv: "Sequence[str]", *, executable: "str | None" = None,
                 env: "Mapping[str, str] | None" = None, cwd: "str | None" = None,
                 umask: "int | None" = None, uid: "int | None" = None, gid: "int | None" = None,
                 groups: "Sequence[int] | None" = None, fds: "Mapping[int, int] | None" = None,
                 session: str = NEW_SESSION, foreground_tty: "int | None" = None,
                 pdeathsig: int = 0, nofile: "tuple[int, int] | None" = None,
                 env_pid_vars: "Sequence[str]" = (), cgroup: "str | None" = None,
                 no_new_privs: bool = False,
                 rlimits: "Sequence[tuple[str, int, int, int]]" = (), nice: "int | None" = None,
                 oom_score_adj: "int | None" = None):
        self.argv = list(argv)
        self.executable = executable
        self.env = environ() if env is None else dict(env)
        self.cwd = cwd
        self.umask = umask
        self.uid = uid
        self.gid = gid
        self.groups = list(groups) if groups is not None else None
        # target fd in the child -> fd in roost; 0, 1 and 2 default to /dev/null
        self.fds = dict(fds or {})
        self.session = session
        self.foreground_tty = foreground_tty
        self.pdeathsig = pdeathsig
        self.nofile = nofile
        # Set to the child's own PID in its environment (LISTEN_PID of socket activation,
        # WATCHDOG_PID): only the child knows it before its exec.
        self.env_pid_vars = tuple(env_pid_vars)
        # A cgroup v2 directory the child joins before anything else, so that it and
        # everything it forks are tracked from the first instruction of the new program.
        self.cgroup = cgroup
        # PR_SET_NO_NEW_PRIVS before exec: no setuid bit or file capability raises it again.
        self.no_new_privs = no_new_privs
        # (name, resource, soft, hard) set after `nofile`; a priority; an OOM score adjustment.
        self.rlimits = list(rlimits)
        self.nice = nice
        self.oom_score_adj = oom_score_adj


class Child:
    """A started child: its PID, a pidfd for race-free signals, and its exec report pipe."""

    __slots__ = ("exec_fd", "pid", "pidfd")

    def __init__(self, pid: int, pidfd: int, exec_fd: int):
        self.pid = pid
        self.pidfd = pidfd
        self.exec_fd = exec_fd

    def exec_result(self) -> "tuple[bool, str | None]":
        """Read the exec report without blocking: (known, error or None if the exec happened)."""
        if self.exec_fd < 0:
            return True, None
        try:
            data = posix.read(self.exec_fd, 4096)
        except BlockingIOError:
            return False, None
        posix.close(self.exec_fd)
        self.exec_fd = -1
        if not data:
            return True, None
        return True, data.decode("utf-8", "replace")

    def signal(self, signum: int) -> bool:
        """Send a signal through the pidfd; False if the process is gone."""
        if self.pidfd < 0:
            return False
        try:
            _signal.pidfd_send_signal(self.pidfd, signum)
        except ProcessLookupError:
            return False
        return True

    def signal_group(self, signum: int) -> None:
        """Signal the process group the child leads (it was spawned into a session of its own).

        Only until it is reaped: its unreaped pid cannot name another group.
        """
        try:
            posix.killpg(self.pid, signum)
        except ProcessLookupError:
            pass

    def close(self) -> None:
        """Release the pidfd and the exec pipe (after the child is reaped)."""
        for fd in (self.pidfd, self.exec_fd):
            if fd >= 0:
                posix.close(fd)
        self.pidfd = self.exec_fd = -1


def find_executable(name: str, path: "str | None") -> "str | None":
    """Resolve a command name the way execvp would, on the given PATH.

    A file found but not executable is returned when nothing better exists, so
    that the exec fails with EACCES (126) rather than "not found" (127).
    """
    if "/" in name:
        return name
    fallback = None
    for directory in (path or "/bin:/usr/bin").split(":"):
        candidate = f"{directory or '.'}/{name}"
        try:
            regular = posix.stat(candidate).st_mode & 0o170000 == 0o100000
        except (OSError, ValueError):
            continue
        if regular:
            if posix.access(candidate, posix.X_OK):
                return candidate
            fallback = fallback or candidate
    return fallback


def environ() -> "dict[str, str]":
    """The environment roost runs in, as text, as os.environ holds it, without importing os.

    `import os` costs a container start more than a millisecond; the container path
    reads the environment from posix, which holds it as bytes. Once os is loaded its
    copy is the truth: a role may have changed it.
    """
    os = sys.modules.get("os")
    if os is not None:
        return dict(os.environ)
    codec = sys.getfilesystemencoding()
    return {k.decode(codec, "surrogateescape"): v.decode(codec, "surrogateescape")
            for k, v in posix.environ.items()}


def exec_failure_code(err: int) -> int:
    """The shell's convention: 127 for a missing command, 126 for one that cannot run."""
    import errno  # noqa: PLC0415 - lazy (start-up): its tables are built at import; only a failed exec needs them

    return 127 if err == errno.ENOENT else 126


_RESET = sorted(sigs.ALL - sigs.UNCATCHABLE)
_ALL_BLOCKABLE = sigs.ALL - sigs.UNCATCHABLE


def spawn(command: "Command") -> "Child":
    """Fork and exec `command`; raise SpawnError when it cannot even be looked up."""
    executable = command.executable or find_executable(command.argv[0], command.env.get("PATH"))
    if executable is None:
        raise SpawnError(f"{command.argv[0]}: command not found", 127)
    if _direct(command):
        return _spawn_direct(command, executable)
    err_r, err_w = posix.pipe2(posix.O_CLOEXEC)
    parent = posix.getpid()
    old_mask = _signal.pthread_sigmask(_signal.SIG_BLOCK, _ALL_BLOCKABLE)
    try:
        pid = posix.fork()
        if pid == 0:
            _child(command, executable, err_w, parent)  # never returns
    except BaseException:
        posix.close(err_r)
        posix.close(err_w)
        raise
    finally:
        if posix.getpid() == parent:
            _signal.pthread_sigmask(_signal.SIG_SETMASK, old_mask)
    posix.close(err_w)
    if command.cgroup is not None:
        # Both sides place the child: once spawn() returns it is in its cgroup.
        _join_cgroup(command.cgroup, pid)
    if command.session == NEW_GROUP:
        # Both sides set the group, so neither can act on the child before it exists.
        try:
            posix.setpgid(pid, pid)
        except OSError:
            pass
    posix.set_blocking(err_r, False)
    try:
        pidfd = posix.pidfd_open(pid)
    except OSError as exc:
        # Out of descriptors: a process roost could not follow must not run at all. Not
        # reaped yet, its pid cannot have been reused: killing it by number is safe.
        posix.kill(pid, _signal.SIGKILL)
        posix.waitpid(pid, 0)
        posix.close(err_r)
        raise SpawnError(f"cannot follow the new process: {exc.strerror}", 126) from None
    return Child(pid, pidfd, err_r)


def _direct(command: "Command") -> bool:
    """Whether posix_spawn gives the child all it is owed: a group or session, signals, fds.

    No other attribute, and every descriptor keeps its number.
    """
    return (command.cwd is None and command.umask is None and command.uid is None
            and command.gid is None and command.groups is None and not command.pdeathsig
            and command.nofile is None and not command.rlimits and command.nice is None
            and command.oom_score_adj is None and command.cgroup is None
            and not command.no_new_privs and not command.env_pid_vars
            and command.foreground_tty is None
            and all(source == target for target, source in command.fds.items())
            and {0, 1, 2} <= command.fds.keys())


def _spawn_direct(command: "Command", executable: str) -> "Child":
    """Start the child by posix_spawn, and raise an exec failure here, at once.

    A vfork, not a copy of roost's page tables: a fork costs a container start most of
    a millisecond.

    Descriptors roost inherited without close-on-exec are closed in the child, as the
    fork path closes every one it was not told to keep.
    """
    keep = command.fds.keys()
    for fd in keep:
        # What the fork path's dup2 does: a kept descriptor (/dev/null roost opened for a
        # closed stdin) must survive the exec.
        try:
            if not posix.get_inheritable(fd):
                posix.set_inheritable(fd, True)
        except OSError as exc:
            raise SpawnError(f"descriptor {fd}: {exc.strerror}", 126) from None
    closes = [(posix.POSIX_SPAWN_CLOSE, fd) for fd in _open_fds() if fd not in keep]
    try:
        if command.session == NEW_GROUP:
            pid = posix.posix_spawn(executable, command.argv, command.env, file_actions=closes,
                                    setsigmask=(), setsigdef=_RESET, setpgroup=0)
        else:
            pid = posix.posix_spawn(executable, command.argv, command.env, file_actions=closes,
                                    setsigmask=(), setsigdef=_RESET,
                                    setsid=command.session == NEW_SESSION)
    except OSError as exc:
        raise SpawnError(f"exec {executable}: {posix.strerror(exc.errno or 0)}",
                         exec_failure_code(exc.errno or 0)) from None
    try:
        pidfd = posix.pidfd_open(pid)
    except OSError as exc:
        posix.kill(pid, _signal.SIGKILL)
        posix.waitpid(pid, 0)
        raise SpawnError(f"cannot follow the new process: {exc.strerror}", 126) from None
    return Child(pid, pidfd, -1)


def _open_fds() -> "list[int]":
    """Descriptors open in roost that an exec would keep (no close-on-exec flag)."""
    try:
        names = posix.listdir("/proc/self/fd")
    except OSError:
        return list(range(3, 1024))  # no /proc: close every likely number
    fds = []
    for name in names:
        fd = int(name)
        try:
            if posix.get_inheritable(fd):
                fds.append(fd)
        except OSError:
            pass  # the listing's own descriptor, closed by now
    return fds


def _child(command: "Command", executable: str, err_w: int, parent: int) -> None:
    stage = "start"
    try:
        _signal.set_wakeup_fd(-1)
        for signum in _RESET:
            _signal.signal(signum, _signal.SIG_DFL)
        if command.cgroup is not None:
            stage = f"join cgroup {command.cgroup}"
            _join_cgroup(command.cgroup, 0, strict=True)
        if command.pdeathsig:
            stage = "prctl"
            from roost.kernel import prctl  # noqa: PLC0415 - lazy (child): loaded by the parent

            prctl.set_pdeathsig(command.pdeathsig)
            if posix.getppid() != parent:  # the parent died before the prctl took effect
                posix._exit(1)
        stage = "setsid"
        if command.session == NEW_SESSION:
            posix.setsid()
        elif command.session == NEW_GROUP:
            posix.setpgid(0, 0)
            if command.foreground_tty is not None:
                posix.tcsetpgrp(command.foreground_tty, posix.getpid())
        stage = "fds"
        err_w = _arrange_fds(command.fds, err_w)
        if command.nofile is not None or command.rlimits:
            import resource  # noqa: PLC0415 - lazy (child): with a limit only

            limits = [("nofile", resource.RLIMIT_NOFILE, *command.nofile)] \
                if command.nofile else []
            for name, which, soft, hard in limits + command.rlimits:
                stage = f"limit {name}"
                resource.setrlimit(which, (soft, hard))
        if command.nice is not None:
            stage = f"nice {command.nice}"
            posix.setpriority(posix.PRIO_PROCESS, 0, command.nice)
        if command.oom_score_adj is not None:
            stage = f"oom_score_adj {command.oom_score_adj}"
            # As root, before the ids change: lowering it needs CAP_SYS_RESOURCE.
            fd = posix.open("/proc/self/oom_score_adj", posix.O_WRONLY | posix.O_CLOEXEC)
            posix.write(fd, str(command.oom_score_adj).encode())
            posix.close(fd)
        if command.cwd is not None:
            stage = f"chdir {command.cwd}"
            posix.chdir(command.cwd)
        if command.umask is not None:
            posix.umask(command.umask)
        if command.no_new_privs:
            # Before the ids change: the account may not read the interpreter's own
            # modules (a pyenv under /root), and the import must still find _ctypes.
            stage = "prctl no_new_privs"
            from roost.kernel import prctl  # noqa: PLC0415 - lazy (child): --no-new-privileges only

            prctl.set_no_new_privs()
        if command.groups is not None:
            stage = "setgroups"
            posix.setgroups(command.groups)
        if command.gid is not None:
            stage = f"setgid {command.gid}"
            posix.setresgid(command.gid, command.gid, command.gid)
        if command.uid is not None:
            stage = f"setuid {command.uid}"
            posix.setresuid(command.uid, command.uid, command.uid)
        for var in command.env_pid_vars:
            command.env[var] = str(posix.getpid())
        stage = f"exec {executable}"
        _signal.pthread_sigmask(_signal.SIG_SETMASK, ())
        posix.execve(executable, command.argv, command.env)
    except OSError as exc:
        code = exec_failure_code(exc.errno or 0) if stage.startswith("exec") else 127
        _report(err_w, f"{stage}: {posix.strerror(exc.errno or 0)}")
        posix._exit(code)
    except BaseException as exc:  # noqa: BLE001 - the child must never return into roost
        _report(err_w, f"{stage}: {exc!r}")
        posix._exit(127)
    posix._exit(127)


def _join_cgroup(directory: str, pid: int, strict: bool = False) -> None:
    """Move `pid` (0: the caller) into a cgroup v2 directory."""
    try:
        fd = posix.open(directory + "/cgroup.procs", posix.O_WRONLY | posix.O_CLOEXEC)
        try:
            posix.write(fd, str(pid).encode())
        finally:
            posix.close(fd)
    except OSError:
        if strict:
            raise


def _arrange_fds(fds: "dict[int, int]", err_w: int) -> int:
    """Put each source fd at its target number, /dev/null on unset stdio, close the rest."""
    plan = dict(fds)
    if 0 not in plan or 1 not in plan or 2 not in plan:
        null = posix.open("/dev/null", posix.O_RDWR | posix.O_CLOEXEC)
        for target in (0, 1, 2):
            plan.setdefault(target, null)
    # Lift every source above every fd in play first, so no dup2 overwrites a source.
    # Whatever else sat at those numbers is closed below anyway.
    floor = max([*plan, *plan.values(), err_w, 2]) + 1
    lifted = {}
    for index, (target, source) in enumerate(plan.items()):
        lifted[target] = posix.dup2(source, floor + index, inheritable=False)
    err_w = posix.dup2(err_w, floor + len(plan), inheritable=False)
    for target, source in lifted.items():
        posix.dup2(source, target, inheritable=True)
    keep = sorted({*plan, err_w})
    low = 3
    for fd in keep:
        if fd >= low:
            if fd > low:
                posix.closerange(low, fd)
            low = fd + 1
    posix.closerange(low, 1 << 30)
    return err_w


def _report(err_w: int, message: str) -> None:
    try:
        posix.write(err_w, message.encode("utf-8", "replace"))
    except OSError:
        pass
