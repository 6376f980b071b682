"""Checking one value of a configuration file: is it of the right kind and in range.

Each checker returns the value converted (a duration to float seconds, a signal
name to its number, a size to bytes) or raises ValueError with the reason, which
roost.config.load reports with the file, line and key. Rules that tie keys
together (a command and `shell`, a service's type and `ready`) are load's.
"""

from __future__ import annotations

from roost.core import sigs
from roost.core.conditions import KEYS as CONDITION_KEYS
from roost.core.exits import SIGNAL_BASE
from roost.core.model import (
    COMMAND_KEYS,
    DIRECTORY_KINDS,
    KILL_MODES,
    NOTIFY_ACCESS,
    RESTART_POLICIES,
    SERVICE_TYPES,
    SYSLOG_FACILITIES,
    SYSLOG_PATH,
)
from roost.kernel import accounts

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {_kind(value)}")
    return value


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {_kind(value)}")
    return value


# The bounds of every number a configuration holds (docs/config.md lists them).
# The longest duration accepted: a timer further away than epoll can wait (about
# 24.8 days) would end the reactor, and no supervision delay needs more.
MAX_SECONDS = 1_000_000
# A rotation renames every kept file in turn, in the reactor: a larger count would
# stall roost for as long as it takes.
MAX_LOG_KEEP = 1000
# The start times within restart_window are kept per service, one float each (32 MB at
# worst); a million is "never give up" for any crash loop a window can hold.
MAX_RESTART_LIMIT = 1_000_000
MAX_BYTES = 1 << 50  # a memory limit or a log file size: 1 PiB
MAX_PIDS = 1 << 22  # the kernel's PID_MAX_LIMIT on 64-bit
MAX_ID = 0xFFFFFFFE  # uid_t and gid_t; (uid_t)-1 means "unchanged" to setresuid
MAX_SIGNAL = 64  # SIGRTMAX on Linux
MAX_READY_FD = 1023
# Descriptors one service may store in roost (FDSTORE=1): counted in the descriptor budget,
# and passed from fd 3 up at each start, below the customary soft RLIMIT_NOFILE.
MAX_UNIX_PATH = 107  # sun_path holds 108 bytes, the last a NUL
MAX_FD_STORE = 1000  # below the customary soft RLIMIT_NOFILE a service starts with


def _seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected a number of seconds, got {_kind(value)}")
    if not value >= 0:  # also rejects NaN
        raise ValueError(f"must be 0 or more, got {shown(value)}")
    if not value <= MAX_SECONDS:
        raise ValueError(f"must be at most {MAX_SECONDS} seconds, got {shown(value)}")
    return float(value)


SHOWN = 40  # characters of a bad value an error message quotes


def shown(value: Any) -> str:
    """A value as an error message quotes it: never longer than a line, whatever it holds."""
    text = repr(value)
    return text if len(text) <= SHOWN else text[: SHOWN - 3] + "..."


def _count(low: int, high: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected an integer, got {_kind(value)}")
        if value < low:
            raise ValueError(f"must be {low} or more, got {shown(value)}")
        if value > high:
            raise ValueError(f"must be at most {high}, got {shown(value)}")
        return value

    return check


def _choice(options: tuple[str, ...]) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in options:
            raise ValueError(f"expected one of {', '.join(options)}; got {shown(value)}")
        return str(value)

    return check


def _names(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"expected a list of service names, got {_kind(value)}")
    return list(value)


def _signal(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"expected a signal name like TERM, got {_kind(value)}")
    if isinstance(value, int) and not 0 <= value <= MAX_SIGNAL:
        raise ValueError(f"no signal numbered {shown(value)}")
    if isinstance(value, str) and len(value) > SHOWN:
        raise ValueError(f"no such signal: {shown(value)}")
    try:
        number = sigs.number(str(value))
    except ValueError as exc:
        raise ValueError(str(exc)) from None
    if number == 0 or number in sigs.UNCATCHABLE - {9}:
        raise ValueError(f"cannot stop a service with {shown(value)}")
    return number


def _environment(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ValueError(f"expected a table of NAME = value, got {_kind(value)}")
    env = {}
    for name, item in value.items():
        if not name or "=" in name:
            raise ValueError(f"bad variable name {shown(name)}")
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            raise ValueError(f"{name}: expected a string, got {_kind(item)}")
        env[name] = str(item)
    return env


def _umask(value: Any) -> int:
    if isinstance(value, str) and value and all(c in "01234567" for c in value):
        number = int(value, 8)
    elif isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        raise ValueError(f"expected an octal string like \"022\", got {shown(value)}")
    if not 0 <= number <= 0o777:
        raise ValueError(f"out of range: {shown(value)}")
    return number


def _exit_statuses(value: Any) -> list[int]:
    """Exit codes 0-255 and signal names, as a set of ExitStatus.number values."""
    if not isinstance(value, list):
        raise ValueError(f"expected a list of exit codes and signal names, got {_kind(value)}")
    numbers = set()
    for item in value:
        if isinstance(item, int) and not isinstance(item, bool) and 0 <= item <= 255:
            numbers.add(item)
            continue
        if isinstance(item, str) and len(item) <= SHOWN and not item.isdigit():
            try:
                numbers.add(SIGNAL_BASE + sigs.number(item))
                continue
            except ValueError:
                pass
        raise ValueError(f"expected an exit code from 0 to 255 or a signal name, "
                         f"got {shown(item)}")
    return sorted(numbers)  # a list: what the reader's JSON gives back


def _account(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_ID:
        return str(value)
    if isinstance(value, int) and not isinstance(value, bool) and value > MAX_ID:
        raise ValueError(f"a numeric id must be at most {MAX_ID}, got {shown(value)}")
    if isinstance(value, str) and value:
        if value.isdigit() and int(value) > MAX_ID:
            raise ValueError(f"a numeric id must be at most {MAX_ID}, got {shown(value)}")
        # No account name holds these (passwd and group are colon- and line-separated),
        # and an error that echoed one could forge lines of `roost check`'s output.
        if any(c in ":," or c.isspace() or not c.isprintable() for c in value):
            raise ValueError(f"not a user or group name: {shown(value)}")
        return value
    raise ValueError(f"expected a name or a numeric id, got {shown(value)}")


# Whether an account exists is asked of roost.kernel.accounts, the resolver the
# spawner uses too: a user the check passes is one a service can start as, and a
# missing one reads the same here as there. A number needs no entry behind it.


def known_user(user: str) -> None:
    """Raise UnknownAccount, a ValueError, unless `user` is a number or a user's name."""
    accounts.user_id(user)


def known_group(group: str) -> None:
    """Raise UnknownAccount, a ValueError, unless `group` is a number or a group's name."""
    accounts.group_id(group)


_SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def _size(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, str) and len(value) <= SHOWN:
        text = value.strip().upper().removesuffix("B").removesuffix("I")
        number, unit = text[:-1] if text[-1:] in _SIZE_UNITS else text, text[-1:]
        if unit not in _SIZE_UNITS:
            unit = ""
            number = text
        if number.isdigit() and int(number) > 0:
            return int(number) * _SIZE_UNITS[unit]
    return None


def _bytes(value: Any) -> int:
    size = _size(value)
    if size is None:
        raise ValueError(f"expected a size like 512M or a number of bytes, got {shown(value)}")
    if size > MAX_BYTES:
        raise ValueError(f"must be at most {MAX_BYTES} bytes (1P), got {shown(value)}")
    return size


def _weight(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 10000:
        return value
    raise ValueError(f"expected an integer from 1 to 10000, got {shown(value)}")


def _argv(value: Any) -> list[str]:
    if value is False:
        return []  # no emergency shell at all
    if isinstance(value, str) and value.strip():
        return [value]
    if isinstance(value, list) and value and all(isinstance(a, str) and a for a in value):
        return list(value)
    raise ValueError("expected a program path, a list like [\"/bin/sh\", \"-l\"] or false, "
                     f"got {shown(value)}")


# systemd's prefixes of a command around the main one that roost honours: "-" a failure
# is ignored, "+" and "!" it runs with roost's privileges (not `user`'s), ":" no $VAR
# expansion, "@" the second word is the argv[0] the program is given.
COMMAND_FLAGS = "-+!:@"


def _commands(value: Any) -> list[list[Any]]:
    """exec_start_pre and the rest: a command (a list of words), or a list of commands."""
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        value = [value]
    if not isinstance(value, list) or not all(
            isinstance(c, list) and c and all(isinstance(w, str) for w in c) for c in value):
        raise ValueError("expected a command like [\"prog\", \"arg\"], or a list of them, "
                         f"got {shown(value)}")
    result = []
    for words in value:
        program = words[0].lstrip(COMMAND_FLAGS)
        flags = words[0][:len(words[0]) - len(program)]
        argv = [program, *words[1:]]
        if "@" in flags and len(argv) < 2:
            raise ValueError(f"{shown(words)}: with \"@\", the second word is argv[0]")
        if not program:
            raise ValueError(f"{shown(words)}: no program")
        result.append([flags, argv])
    return result


def _syslog(value: Any) -> str:
    """`log_syslog`: true (/dev/log), false, or the absolute path of a syslog socket."""
    if value is True:
        return SYSLOG_PATH
    if value is False:
        return ""
    if isinstance(value, str) and value.startswith("/") and len(value.encode()) <= MAX_UNIX_PATH:
        return value
    raise ValueError(f"expected true, false or a socket's absolute path of at most "
                     f"{MAX_UNIX_PATH} bytes, got {shown(value)}")


def _facility(value: Any) -> str:
    if isinstance(value, str) and value in SYSLOG_FACILITIES:
        return value
    raise ValueError(f"expected a syslog facility (daemon, user, local0 to local7...), "
                     f"got {shown(value)}")


def _has_nul(value: Any) -> bool:
    """True if a string anywhere in `value` holds NUL (no syscall argument can carry one)."""
    if isinstance(value, str):
        return "\0" in value
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    return False


def checked(checker: Callable[[Any], Any], value: Any) -> Any:
    """Run a key's checker, after refusing a NUL character anywhere in the value."""
    try:
        nul = _has_nul(value)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    if nul:
        raise ValueError("contains a NUL character")
    return checker(value)


def _kind(value: Any) -> str:
    return {
        bool: "a boolean", int: "an integer", float: "a number", str: "a string",
        list: "a list", dict: "a table",
    }.get(type(value), type(value).__name__)


# The keys a file may hold, each with its checker; any other key is unknown.
SERVICE_KEYS: dict[str, Callable[[Any], Any]] = {
    "command": lambda v: v,  # checked with `shell` by load._service
    "shell": _boolean,
    "type": _choice(SERVICE_TYPES),
    "autostart": _boolean,
    "requires": _names,
    "wants": _names,
    "restart": _choice(RESTART_POLICIES),
    "restart_delay": _seconds,
    "restart_delay_max": _seconds,
    "restart_limit": _count(1, MAX_RESTART_LIMIT),
    "restart_window": _seconds,
    "restart_reset": _seconds,
    "success_exit_status": _exit_statuses,
    "restart_prevent_exit_status": _exit_statuses,
    "stop_signal": _signal,
    "reload_signal": _signal,
    "final_kill_signal": _signal,
    "kill_mode": _choice(KILL_MODES),
    "send_sigkill": _boolean,
    "remain_after_exit": _boolean,
    **dict.fromkeys(COMMAND_KEYS, _commands),
    "stop_timeout": _seconds,
    "start_timeout": _seconds,
    "ready": lambda v: v,  # checked by load with config/probes.py, which builds on this module
    "notify_access": _choice(NOTIFY_ACCESS),
    "watchdog_sec": _seconds,
    "fd_store_max": _count(0, MAX_FD_STORE),
    "sockets": lambda v: v,  # checked by load with config/sockets.py, which builds on this module
    "user": _account,
    "group": _account,
    "working_directory": _string,
    "environment": _environment,
    "umask": _umask,
    "stderr": _choice(("log", "stdout")),
    "pid_file": _string,
    "memory_max": _bytes,
    "pids_max": _count(1, MAX_PIDS),
    "cpu_weight": _weight,
    "health": lambda v: v,  # checked by load with config/probes.py
    # Checked by load with config/process.py; *_directory(_mode) gathered into directories.
    "limits": lambda v: v,
    "nice": lambda v: v,
    "no_new_privileges": _boolean,
    "oom_score_adjust": lambda v: v,
    "runtime_directory_preserve": lambda v: v,
    **{f"{kind}_directory{suffix}": lambda v: v for kind in DIRECTORY_KINDS
       for suffix in ("", "_mode")},
    # Checked by load with config/conditions.py; gathered into ServiceConfig.conditions.
    **dict.fromkeys(CONDITION_KEYS, lambda v: v),
}

SETTINGS_KEYS: dict[str, Callable[[Any], Any]] = {
    "log_dir": _string,
    "log_max_bytes": _count(1, MAX_BYTES),
    "log_keep": _count(1, MAX_LOG_KEEP),
    "log_console": _boolean,
    "log_syslog": _syslog,
    "log_syslog_facility": _facility,
    "control": _string,
    "control_group": _account,
    "emergency_shell": _argv,
    "fatal_action": _choice(("reboot", "poweroff", "halt")),
    "ctrl_alt_del": _choice(("reboot", "poweroff", "halt", "ignore")),
    "kill_timeout": _seconds,
    "shutdown_timeout": _seconds,
    "finale": _choice(("auto", "always", "never")),
}
