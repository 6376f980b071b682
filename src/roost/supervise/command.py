"""What a service's process starts with: command line, account, environment, descriptors."""

from __future__ import annotations

import os

from roost.core.model import DIRECTORY_BASES
from roost.kernel import accounts, dirs
from roost.kernel.spawn import Command

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from roost.core.model import ServiceConfig

# Variables a service must not inherit from roost's own environment: they were
# addressed to roost.
PRIVATE_ENV = frozenset({"NOTIFY_SOCKET", "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES",
                         "ROOST_CONTROL", "WATCHDOG_USEC", "WATCHDOG_PID"})


# SD_LISTEN_FDS_START: the first descriptor a service is handed.
LISTEN_FDS_START = 3


def inherited(environ: Mapping[str, str]) -> dict[str, str]:
    """The part of roost's environment every service starts from."""
    return {k: v for k, v in environ.items() if k not in PRIVATE_ENV}


def build(config: ServiceConfig, base_env: Mapping[str, str], *, log_fds: tuple[int, int],
          ready_fd: int | None = None, notify_socket: str | None = None,
          pdeathsig: int = 0, nofile: tuple[int, int] | None = None,
          cgroup: str | None = None, argv: list[str] | None = None) -> Command:
    """The Command for one start of a service; raise UnknownAccount for a user that is gone.

    `log_fds` become its stdout and stderr. `ready_fd` is roost's end of the notification
    pipe, put at the number `ready = "fd:N"` names; `notify_socket` the address for
    $NOTIFY_SOCKET, with
    $WATCHDOG_USEC and $WATCHDOG_PID (the child's own pid) when it has a watchdog.
    `argv` runs another program in the service's place, as it would run (a health check's).
    """
    account = accounts.resolve(config.user, config.group)
    env = dict(base_env)
    env.update(account.env)
    env.update(config.environment)
    pid_vars: list[str] = []
    if notify_socket is not None:
        env["NOTIFY_SOCKET"] = notify_socket
        if config.watchdog_sec > 0:
            # sd_watchdog_enabled() heeds WATCHDOG_USEC only in the process WATCHDOG_PID names.
            env["WATCHDOG_USEC"] = str(round(config.watchdog_sec * 1_000_000))
            pid_vars.append("WATCHDOG_PID")
    fds = {1: log_fds[0], 2: log_fds[1]}
    if ready_fd is not None and config.ready_fd is not None:
        fds[config.ready_fd] = ready_fd
        if config.ready.startswith("pipevar:"):
            env[config.ready.removeprefix("pipevar:")] = str(config.ready_fd)
    return Command(config.argv if argv is None else argv, env=env,
                   cwd=config.working_directory, umask=config.umask, uid=account.uid,
                   gid=account.gid, groups=account.groups, fds=fds, pdeathsig=pdeathsig,
                   nofile=nofile, cgroup=cgroup, env_pid_vars=pid_vars,
                   rlimits=[(name, which, soft, hard)
                            for name, (which, soft, hard) in config.limits.items()],
                   nice=config.nice, oom_score_adj=config.oom_score_adjust,
                   no_new_privs=config.no_new_privileges)


def hand_over(cmd: Command, passed: Sequence[tuple[str, int]]) -> None:
    """Pass (name, descriptor) pairs from fd 3 up, as sd_listen_fds(3) reads them.

    With LISTEN_FDS, LISTEN_FDNAMES, and LISTEN_PID: the child's own pid, set after fork.
    """
    if not passed:
        return
    cmd.fds.update({LISTEN_FDS_START + i: fd for i, (_name, fd) in enumerate(passed)})
    cmd.env["LISTEN_FDS"] = str(len(passed))
    cmd.env["LISTEN_FDNAMES"] = ":".join(name for name, _fd in passed)
    cmd.env_pid_vars = (*cmd.env_pid_vars, "LISTEN_PID")


def bases(environ: Mapping[str, str]) -> dict[str, str]:
    """Where each kind of service directory goes: systemd's for root, XDG's for a user."""
    if os.geteuid() == 0:
        return dict(DIRECTORY_BASES)
    home = environ.get("HOME", "/")
    state = environ.get("XDG_STATE_HOME", os.path.join(home, ".local/state"))
    return {"runtime": environ.get("XDG_RUNTIME_DIR", f"/tmp/roost-{os.geteuid()}"),
            "state": state, "cache": environ.get("XDG_CACHE_HOME", os.path.join(home, ".cache")),
            "logs": os.path.join(state, "log"),
            "configuration": environ.get("XDG_CONFIG_HOME", os.path.join(home, ".config"))}


def make_directories(config: ServiceConfig, cmd: Command,
                     environ: Mapping[str, str]) -> None:
    """Make the service's directories for this start and name them in its environment.

    Raise OSError (kernel/dirs.Refused) when one cannot be made safely.
    """
    if not config.directories:
        return
    where = bases(environ)
    uid = os.geteuid() if cmd.uid is None else cmd.uid
    gid = os.getegid() if cmd.gid is None else cmd.gid
    for kind, (names, mode) in config.directories.items():
        made = []
        for name in names:
            if kind == "runtime" and config.runtime_directory_preserve is False:
                dirs.remove(where[kind], name)  # systemd's "no": a fresh one each start
            made.append(dirs.make(where[kind], name, uid, gid, mode))
        if made:
            cmd.env[f"{kind.upper()}_DIRECTORY"] = ":".join(made)


def remove_runtime_directories(config: ServiceConfig, environ: Mapping[str, str]) -> None:
    """The service stopped for good: its runtime directories go, unless it keeps them."""
    if config.runtime_directory_preserve is True or "runtime" not in config.directories:
        return
    base = bases(environ)["runtime"]
    for name in config.directories["runtime"][0]:
        dirs.remove(base, name)
