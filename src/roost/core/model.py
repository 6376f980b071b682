"""What a configuration says, once it has been read and checked.

Plain classes with slots: a supervisor holds one of these per service for as
long as it runs, and a thousand services should cost kilobytes, not megabytes.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

NO_COMMANDS: tuple[list[Any], ...] = ()
# The commands around a service's main one, in the order a run may reach them.
COMMAND_KEYS = ("exec_condition", "exec_start_pre", "exec_start_post", "exec_reload",
                "exec_stop", "exec_stop_post")
KILL_MODES = ("control-group", "mixed", "process")
SERVICE_TYPES = ("simple", "oneshot", "forking", "notify")
RESTART_POLICIES = ("always", "on-success", "on-failure", "on-abnormal", "on-abort",
                    "on-watchdog", "never")
# Which ends of a run each policy restarts after, as systemd.service(5) tabulates them:
# "success" (exit 0, or a success_exit_status), "code" (another exit code), "signal"
# (killed by a signal), "timeout" (not ready in time), "watchdog" (no keep-alive),
# "unhealthy" (failed health checks, counted as systemd counts a watchdog).
RESTARTS_AFTER = {
    "always": frozenset({"success", "code", "signal", "timeout", "watchdog", "unhealthy"}),
    "on-success": frozenset({"success"}),
    "on-failure": frozenset({"code", "signal", "timeout", "watchdog", "unhealthy"}),
    "on-abnormal": frozenset({"signal", "timeout", "watchdog", "unhealthy"}),
    "on-abort": frozenset({"signal"}),
    "on-watchdog": frozenset({"watchdog"}),
    "never": frozenset(),
}

# What a service may be called (its file is NAME.toml): a regular expression.
SERVICE_NAME = r"[A-Za-z0-9][A-Za-z0-9_.@-]*"
NOTIFY_ACCESS = ("main", "exec", "all", "none")
HEALTH_KINDS = ("command", "tcp", "http")
# Where `ready = "pipevar:VAR"` puts the pipe (dinit: "chosen arbitrarily"); $VAR says so.
PIPEVAR_FD = 3


class HealthCheck:
    """A service's `health` table: what is probed, how often, and when it is unhealthy.

    `kind` is one of HEALTH_KINDS; `argv` is a command's, `host` and `port` a tcp or
    http probe's (a numeric address: a name would need a lookup, which blocks), `path`
    an http probe's.
    """

    __slots__ = ("argv", "host", "interval", "kind", "path", "port", "retries",
                 "start_period", "timeout")

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.argv: list[str] = []
        self.host = ""
        self.port = 0
        self.path = "/"
        self.interval = 10.0
        self.timeout = 5.0
        self.retries = 3
        self.start_period = 0.0

    def __repr__(self) -> str:
        fields = ", ".join(f"{slot}={getattr(self, slot)!r}" for slot in self.__slots__)
        return f"HealthCheck({fields})"

    def fields(self) -> dict[str, object]:
        """Every slot by name: the form the configuration reader hands it back in."""
        return {slot: getattr(self, slot) for slot in self.__slots__}

    @classmethod
    def from_fields(cls, fields: dict[str, object]) -> HealthCheck:
        """The check `fields()` described."""
        check = cls(str(fields["kind"]))
        for slot, value in fields.items():
            setattr(check, slot, value)
        return check


# The *_directory keys (systemd's RuntimeDirectory= and friends), and the base of each for
# a roost run by root; a roost of another user puts them under its XDG directories.
# Where `log_syslog = true` sends service output, and the facilities it may be sent as.
SYSLOG_PATH = "/dev/log"
SYSLOG_FACILITIES = {"kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5,
                     "lpr": 6, "news": 7, "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11,
                     **{f"local{n}": 16 + n for n in range(8)}}
DIRECTORY_KINDS = ("runtime", "state", "cache", "logs", "configuration")
DIRECTORY_BASES = {"runtime": "/run", "state": "/var/lib", "cache": "/var/cache",
                   "logs": "/var/log", "configuration": "/etc"}


class ServiceConfig:
    """One service, from `NAME.toml`."""

    __slots__ = (
        "argv",
        "autostart",
        "conditions",
        "cpu_weight",
        "directories",
        "environment",
        "exec_condition",
        "exec_reload",
        "exec_start_post",
        "exec_start_pre",
        "exec_stop",
        "exec_stop_post",
        "fd_store_max",
        "final_kill_signal",
        "group",
        "health",
        "kill_mode",
        "limits",
        "memory_max",
        "name",
        "nice",
        "no_new_privileges",
        "notify_access",
        "oom_score_adjust",
        "path",
        "pid_file",
        "pids_max",
        "ready",
        "reload_signal",
        "remain_after_exit",
        "requires",
        "restart",
        "restart_delay",
        "restart_delay_max",
        "restart_limit",
        "restart_prevent_exit_status",
        "restart_reset",
        "restart_window",
        "runtime_directory_preserve",
        "send_sigkill",
        "sockets",
        "start_timeout",
        "stderr",
        "stop_signal",
        "stop_timeout",
        "success_exit_status",
        "type",
        "umask",
        "user",
        "wants",
        "watchdog_sec",
        "working_directory",
    )

    def __init__(self, name: str, path: str, argv: list[str]):
        self.name = name
        self.path = path
        self.argv = argv
        self.type = "simple"
        self.autostart = True
        self.requires: list[str] = []
        self.wants: list[str] = []
        # [key, "[|][!]path"] of every condition_* and assert_* key, in the file's order.
        self.conditions: list[list[str]] = []
        self.restart = "on-failure"
        self.restart_delay = 0.5
        self.restart_delay_max = 30.0
        self.restart_limit = 10
        self.restart_window = 60.0
        self.restart_reset = 10.0
        self.stop_signal = 15
        self.stop_timeout = 10.0
        # Exit codes (and SIGNAL_BASE + signals) that count as success beyond exit 0, and
        # those after which the service is never restarted, whatever `restart` says.
        self.success_exit_status: list[int] = []
        self.restart_prevent_exit_status: list[int] = []
        self.start_timeout = 60.0
        # "exec": ready once exec succeeded; "fd:N": a newline on fd N (s6);
        # "pipevar:VAR": a byte on the fd $VAR names (dinit); "file:PATH": PATH exists;
        # "tcp:HOST:PORT": a connect succeeds; "notify": READY=1 on $NOTIFY_SOCKET;
        # "exit": a oneshot or forking launcher exiting 0.
        self.ready = "exec"
        # Who may speak on a notify service's socket: "main" (its main process),
        # "exec" (the same: roost runs no other process for it), "all" (any of its
        # processes), "none".
        self.notify_access = "main"
        # A notify service that stays silent (no WATCHDOG=1) this long once up is ended
        # as hung; 0 = no watchdog.
        self.watchdog_sec = 0.0
        # Descriptors a notify service may leave with roost (FDSTORE=1), handed back at its
        # next start with LISTEN_FDS; 0 = none kept.
        self.fd_store_max = 0
        # What roost listens on for it before its first start, held across its restarts,
        # passed from fd 3 up: [kind, address, port, name, mode, user, group, backlog]
        # (config/sockets.py).
        self.sockets: list[list[Any]] = []
        self.user: str | None = None
        self.group: str | None = None
        self.working_directory: str | None = None
        self.environment: dict[str, str] = {}
        # Resource limits as (resource, soft, hard), by their lower-cased LimitXXX= name.
        self.limits: dict[str, list[int]] = {}
        self.nice: int | None = None
        # PR_SET_NO_NEW_PRIVS: no setuid program or file capability raises it again.
        self.no_new_privileges = False
        self.oom_score_adjust: int | None = None
        # kind ("runtime", ...) -> (paths below its base, mode), made before each start.
        self.directories: dict[str, list[Any]] = {}
        # The runtime directories are removed when the service stops (false), never
        # (true), or only when it stops for good ("restart": kept across restarts).
        self.runtime_directory_preserve: bool | str = False
        self.umask: int | None = None
        # "log": standard error is a stream of its own in the log; "stdout": it shares
        # standard output's pipe, so the two keep the order they were written in.
        self.stderr = "log"
        self.pid_file: str | None = None
        self.memory_max: int | None = None
        self.pids_max: int | None = None
        self.cpu_weight: int | None = None
        self.health: HealthCheck | None = None
        # The commands around the main one (core/commands.py), each [flags, argv]: flags
        # are systemd's prefixes, "-" (a failure is ignored) and "+" (run as root). None is
        # an empty tuple shared by all: six new lists for each of a thousand services would
        # cost a supervisor that runs no such command a third of a megabyte.
        self.exec_condition: Sequence[list[Any]] = NO_COMMANDS
        self.exec_start_pre: Sequence[list[Any]] = NO_COMMANDS
        self.exec_start_post: Sequence[list[Any]] = NO_COMMANDS
        self.exec_reload: Sequence[list[Any]] = NO_COMMANDS
        self.exec_stop: Sequence[list[Any]] = NO_COMMANDS
        self.exec_stop_post: Sequence[list[Any]] = NO_COMMANDS
        # What `roost reload` sends the main process when there is no exec_reload.
        self.reload_signal: int | None = None
        # Whom a stop signals (systemd's KillMode=): "control-group" every process of the
        # service; "mixed" the main process, then final_kill_signal to what it left;
        # "process" the main process only, and what it leaves is not waited for.
        self.kill_mode = "control-group"
        self.final_kill_signal = 9
        # False: a stop over stop_timeout is left to end by itself (systemd's SendSIGKILL=no).
        self.send_sigkill = True
        # A oneshot that exited 0 stays up (its exec_stop runs when it is stopped).
        self.remain_after_exit = False

    @property
    def ready_fd(self) -> int | None:
        """The notification fd number for `ready = "fd:N"`, or the one `pipevar:` is given."""
        if self.ready.startswith("fd:"):
            return int(self.ready[3:])
        if self.ready.startswith("pipevar:"):
            return PIPEVAR_FD
        return None

    @property
    def after(self) -> list[str]:
        """Every service this one is ordered after (requires and wants)."""
        return self.requires + [w for w in self.wants if w not in self.requires]

    def fingerprint(self) -> tuple[object, ...]:
        """Everything that defines the service: equal fingerprints need no restart on reload."""
        return tuple(
            (slot, repr(getattr(self, slot))) for slot in self.__slots__ if slot != "path"
        )


class Settings:
    """Global settings, from `roost.toml`."""

    __slots__ = ("control", "control_group", "ctrl_alt_del", "emergency_shell", "fatal_action",
                 "finale", "kill_timeout", "log_console", "log_dir", "log_keep", "log_max_bytes",
                 "log_syslog", "log_syslog_facility", "path", "shutdown_timeout")

    def __init__(self) -> None:
        self.path: str | None = None
        self.log_dir: str | None = None
        self.log_max_bytes = 1 << 20
        self.log_keep = 3
        self.log_console: bool | None = None
        # Service output also to syslog: the socket's path ("" = none), with this facility.
        self.log_syslog = ""
        self.log_syslog_facility = "daemon"
        self.control: str | None = None
        self.control_group: str | None = None
        # System mode (roost as init); see docs/system-init.md.
        self.emergency_shell: list[str] | None = None  # run on the console when boot fails
        self.fatal_action = "reboot"  # after the emergency shell, or instead of it
        self.ctrl_alt_del = "reboot"
        self.kill_timeout = 5.0  # TERM to what is left at shutdown, then KILL
        self.shutdown_timeout = 120.0  # for every service to stop, before the kill phase
        self.finale = "auto"  # pivot to a shutdown tmpfs: auto, always or never


class Config:
    """A whole configuration directory: its services and global settings."""

    __slots__ = ("directory", "services", "settings", "warnings")

    def __init__(self, directory: str, services: dict[str, ServiceConfig], settings: Settings,
                 warnings: list[str] | None = None):
        self.directory = directory
        self.services = services
        self.settings = settings
        # Files of the directory roost does not read, and what a unit's mapping left out.
        self.warnings = warnings or []


def changes(old: dict[str, ServiceConfig],
            new: dict[str, ServiceConfig]) -> tuple[list[str], list[str], list[str]]:
    """What a reload changes: the services (added, removed, changed), each sorted by name."""
    added = sorted(set(new) - set(old))
    removed = sorted(set(old) - set(new))
    changed = sorted(n for n in set(old) & set(new)
                     if old[n].fingerprint() != new[n].fingerprint())
    return added, removed, changed
