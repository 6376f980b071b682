"""Reading a configuration directory and checking all of it before anything starts.

Every problem is collected, not just the first: `roost check` prints them all,
and `roost up` refuses to start anything while one remains. Each error names the
file, the line (tomllib reports none for values, so the line of a key is found
by reading the file's text), and the key.
"""

from __future__ import annotations

import grp
import os
import pwd
import re

from roost import sigs
from roost.config.model import (
    RESTART_POLICIES,
    SERVICE_TYPES,
    Config,
    ServiceConfig,
    Settings,
)
from roost.graph import find_cycle
from roost.spawn import find_executable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]*\Z")
SETTINGS_FILE = "roost.toml"


class ConfigError:
    """One problem: where it is (file, line, key) and what is wrong."""

    __slots__ = ("key", "line", "message", "path")

    def __init__(self, path: str, message: str, key: str | None = None, line: int | None = None):
        self.path = path
        self.message = message
        self.key = key
        self.line = line

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"

    def __repr__(self) -> str:
        return f"ConfigError({str(self)!r})"


class ConfigInvalid(Exception):
    """The configuration has errors; `errors` lists every one."""

    def __init__(self, errors: list[ConfigError]):
        super().__init__("\n".join(str(e) for e in errors))
        self.errors = errors


# -- value checkers: return the converted value or raise ValueError(reason) --


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {_kind(value)}")
    return value


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {_kind(value)}")
    return value


# The longest duration accepted: a timer further away than epoll can wait (about
# 24.8 days) would end the reactor, and no supervision delay needs more.
MAX_SECONDS = 1_000_000


def _seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected a number of seconds, got {_kind(value)}")
    if not value >= 0:  # also rejects NaN
        raise ValueError(f"must be 0 or more, got {value}")
    if not value <= MAX_SECONDS:
        raise ValueError(f"must be at most {MAX_SECONDS} seconds, got {value}")
    return float(value)


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected an integer, got {_kind(value)}")
    if value < 1:
        raise ValueError(f"must be 1 or more, got {value}")
    return value


def _choice(options: tuple[str, ...]) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in options:
            raise ValueError(f"expected one of {', '.join(options)}; got {value!r}")
        return str(value)

    return check


def _names(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"expected a list of service names, got {_kind(value)}")
    return list(value)


def _signal(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"expected a signal name like TERM, got {_kind(value)}")
    try:
        number = sigs.number(str(value))
    except ValueError as exc:
        raise ValueError(str(exc)) from None
    if number == 0 or number in sigs.UNCATCHABLE - {9}:
        raise ValueError(f"cannot stop a service with {value!r}")
    return number


def _environment(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ValueError(f"expected a table of NAME = value, got {_kind(value)}")
    env = {}
    for name, item in value.items():
        if not name or "=" in name:
            raise ValueError(f"bad variable name {name!r}")
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
        raise ValueError(f"expected an octal string like \"022\", got {value!r}")
    if not 0 <= number <= 0o777:
        raise ValueError(f"out of range: {value!r}")
    return number


def _ready(value: Any) -> str:
    if value == "exec":
        return "exec"
    if isinstance(value, str) and value.startswith("fd:") and value[3:].isdigit():
        if int(value[3:]) < 3:
            raise ValueError("the notification fd must be 3 or more (0-2 are stdio)")
        return value
    raise ValueError(f"expected \"exec\" or \"fd:N\", got {value!r}")


def _account(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return str(value)
    if isinstance(value, str) and value:
        return value
    raise ValueError(f"expected a name or a numeric id, got {value!r}")


_SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def _bytes(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, str):
        text = value.strip().upper().removesuffix("B").removesuffix("I")
        number, unit = text[:-1] if text[-1:] in _SIZE_UNITS else text, text[-1:]
        if unit not in _SIZE_UNITS:
            unit = ""
            number = text
        if number.isdigit() and int(number) > 0:
            return int(number) * _SIZE_UNITS[unit]
    raise ValueError(f"expected a size like 512M or a number of bytes, got {value!r}")


def _weight(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 10000:
        return value
    raise ValueError(f"expected an integer from 1 to 10000, got {value!r}")


def _argv(value: Any) -> list[str]:
    if isinstance(value, str) and value.strip():
        return [value]
    if isinstance(value, list) and value and all(isinstance(a, str) and a for a in value):
        return list(value)
    raise ValueError(f"expected a program path or a list like [\"/bin/sh\", \"-l\"], got {value!r}")


def _has_nul(value: Any) -> bool:
    """True if a string anywhere in `value` holds NUL (no syscall argument can carry one)."""
    if isinstance(value, str):
        return "\0" in value
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    return False


def _checked(checker: Callable[[Any], Any], value: Any) -> Any:
    """Run a key's checker, after refusing a NUL character anywhere in the value."""
    if _has_nul(value):
        raise ValueError("contains a NUL character")
    return checker(value)


def _kind(value: Any) -> str:
    return {
        bool: "a boolean", int: "an integer", float: "a number", str: "a string",
        list: "a list", dict: "a table",
    }.get(type(value), type(value).__name__)


SERVICE_KEYS: dict[str, Callable[[Any], Any]] = {
    "command": lambda v: v,  # checked with `shell` below
    "shell": _boolean,
    "type": _choice(SERVICE_TYPES),
    "autostart": _boolean,
    "requires": _names,
    "wants": _names,
    "restart": _choice(RESTART_POLICIES),
    "restart_delay": _seconds,
    "restart_delay_max": _seconds,
    "restart_limit": _count,
    "restart_window": _seconds,
    "restart_reset": _seconds,
    "stop_signal": _signal,
    "stop_timeout": _seconds,
    "start_timeout": _seconds,
    "ready": _ready,
    "user": _account,
    "group": _account,
    "working_directory": _string,
    "environment": _environment,
    "umask": _umask,
    "pid_file": _string,
    "memory_max": _bytes,
    "pids_max": _count,
    "cpu_weight": _weight,
}

SETTINGS_KEYS: dict[str, Callable[[Any], Any]] = {
    "log_dir": _string,
    "log_max_bytes": _count,
    "log_keep": _count,
    "log_console": _boolean,
    "control": _string,
    "control_group": _account,
    "emergency_shell": _argv,
    "fatal_action": _choice(("reboot", "poweroff", "halt")),
    "ctrl_alt_del": _choice(("reboot", "poweroff", "halt", "ignore")),
    "kill_timeout": _seconds,
    "shutdown_timeout": _seconds,
    "finale": _choice(("auto", "always", "never")),
}


# -- locating keys in the text ------------------------------------------------


def _key_line(text: str, key: str) -> int | None:
    """The line of the first top-level `key =` (quoted or bare), 1-based."""
    pattern = re.compile(rf"""^\s*(?:{re.escape(key)}|"{re.escape(key)}"|'{re.escape(key)}')\s*=""")
    table_pattern = re.compile(rf"^\s*\[\s*{re.escape(key)}\s*\]")
    in_table = False
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("["):
            if table_pattern.match(line):
                return number
            in_table = True
            continue
        if not in_table and pattern.match(line):
            return number
    return None


def _decode_error_line(message: str) -> int | None:
    match = re.search(r"at line (\d+)", message)
    return int(match.group(1)) if match else None


def _read_toml(path: str, errors: list[ConfigError]) -> tuple[dict[str, Any], str] | None:
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        errors.append(ConfigError(path, f"cannot read: {exc.strerror}"))
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        errors.append(ConfigError(path, f"not UTF-8 text (byte {exc.start})"))
        return None
    import tomllib  # noqa: PLC0415 - see roost.config.reader: the supervisor never loads it

    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        line = _decode_error_line(message)
        if line is None and "end of document" in message:
            line = max(1, len(text.splitlines()))  # where the parser gave up
        message = re.sub(r"\s*\(at .*\)$", "", message)
        errors.append(ConfigError(path, f"TOML syntax: {message}", line=line))
        return None


def _unknown(path: str, text: str, key: str, known: dict[str, Any]) -> ConfigError:
    import difflib  # noqa: PLC0415 - only on the error path

    close = difflib.get_close_matches(key, list(known), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ConfigError(path, f"unknown key{hint}", key=key, line=_key_line(text, key))


# -- services ----------------------------------------------------------------


def _service(name: str, path: str, data: dict[str, Any], text: str, directory: str,
             errors: list[ConfigError]) -> ServiceConfig:
    def error(key: str | None, message: str) -> None:
        errors.append(ConfigError(path, message, key=key,
                                  line=_key_line(text, key) if key else None))

    values: dict[str, Any] = {}
    for key, value in data.items():
        checker = SERVICE_KEYS.get(key)
        if checker is None:
            errors.append(_unknown(path, text, key, SERVICE_KEYS))
            continue
        try:
            values[key] = _checked(checker, value)
        except ValueError as exc:
            error(key, str(exc))

    shell = values.get("shell", False)
    command = values.get("command")
    argv: list[str] = []
    if "command" not in data:
        error(None, "command: required key missing")
    elif "command" not in values:
        pass  # refused before its shape was looked at; that error says why
    elif shell:
        if not isinstance(command, str) or not command.strip():
            error("command", "with shell = true, expected a non-empty string")
        else:
            argv = ["/bin/sh", "-c", command]
    elif isinstance(command, str):
        error("command", "expected a list like [\"prog\", \"arg\"] (a string needs shell = true)")
    elif (not isinstance(command, list) or not command
          or not all(isinstance(a, str) for a in command)):
        error("command", "expected a non-empty list of strings")
    else:
        argv = list(command)

    service = ServiceConfig(name, path, argv)
    for key, value in values.items():
        if key in ("command", "shell"):
            continue
        setattr(service, key, value)
    if "restart" not in values and service.type == "oneshot":
        service.restart = "never"

    if service.type in ("oneshot", "forking"):
        if "ready" in values:
            error("ready", f"a {service.type} service is ready when its command exits 0")
        service.ready = "exit"
    elif service.type == "notify":
        if "ready" in values:
            error("ready", "a notify service is ready when it sends READY=1")
        service.ready = "notify"
    if service.type != "forking" and service.pid_file is not None:
        error("pid_file", "only a forking service has a pid file")
    if service.type == "oneshot" and service.restart == "always":
        error("restart", "a oneshot that exits 0 is done; use \"on-failure\" or \"never\"")
    if service.restart_delay_max < service.restart_delay:
        if "restart_delay_max" in values:
            error("restart_delay_max", "must not be less than restart_delay")
        else:
            error("restart_delay", f"must not be more than restart_delay_max "
                  f"({service.restart_delay_max:g}s)")
    for dep in service.after:
        if dep == name:
            key = "requires" if dep in service.requires else "wants"
            error(key, "a service cannot depend on itself")

    if service.working_directory is None:
        service.working_directory = directory
    elif not os.path.isabs(service.working_directory):
        service.working_directory = os.path.join(directory, service.working_directory)
    if "working_directory" in values and not os.path.isdir(service.working_directory):
        error("working_directory", f"no such directory: {service.working_directory}")

    if service.user is not None and not service.user.isdigit():
        try:
            pwd.getpwnam(service.user)
        except KeyError:
            error("user", f"no such user: {service.user}")
    if service.group is not None and not service.group.isdigit():
        try:
            grp.getgrnam(service.group)
        except KeyError:
            error("group", f"no such group: {service.group}")

    if argv:
        path_var = service.environment.get("PATH", os.environ.get("PATH", os.defpath))
        program = argv[0]
        if "/" in program and not os.path.isabs(program):
            program = os.path.join(service.working_directory, program)
        found = find_executable(program, path_var)
        if found is None or not os.path.exists(found):
            error("command", f"command not found: {argv[0]}")
        elif not os.access(found, os.X_OK) or os.path.isdir(found):
            error("command", f"not executable: {found}")
    return service


def _settings(path: str, errors: list[ConfigError]) -> Settings:
    settings = Settings()
    if not os.path.exists(path):
        return settings
    settings.path = path
    loaded = _read_toml(path, errors)
    if loaded is None:
        return settings
    data, text = loaded
    for key, value in data.items():
        checker = SETTINGS_KEYS.get(key)
        if checker is None:
            errors.append(_unknown(path, text, key, SETTINGS_KEYS))
            continue
        try:
            setattr(settings, key, _checked(checker, value))
        except ValueError as exc:
            errors.append(ConfigError(path, str(exc), key=key, line=_key_line(text, key)))
    if settings.log_dir and not os.path.isabs(settings.log_dir):
        # Like working_directory: relative to the configuration, not to roost's cwd.
        settings.log_dir = os.path.join(os.path.dirname(path), settings.log_dir)
    if settings.control_group is not None and not settings.control_group.isdigit():
        try:
            grp.getgrnam(settings.control_group)
        except KeyError:
            errors.append(ConfigError(path, f"no such group: {settings.control_group}",
                                      key="control_group",
                                      line=_key_line(text, "control_group")))
    return settings


def read(directory: str) -> tuple[Config, list[ConfigError]]:
    """Read and check a configuration directory; return it with every error found."""
    errors: list[ConfigError] = []
    directory = os.path.abspath(directory)
    try:
        entries = sorted(os.listdir(directory))
    except OSError as exc:
        errors.append(ConfigError(directory, f"cannot read the directory: {exc.strerror}"))
        return Config(directory, {}, Settings()), errors
    settings = _settings(os.path.join(directory, SETTINGS_FILE), errors)
    services: dict[str, ServiceConfig] = {}
    # Every service that could be parsed, valid or not: a cycle through an invalid
    # service is still reported in the same pass.
    parsed: dict[str, ServiceConfig] = {}
    texts: dict[str, str] = {}
    for entry in entries:
        if not entry.endswith(".toml") or entry == SETTINGS_FILE:
            continue
        path = os.path.join(directory, entry)
        name = entry[: -len(".toml")]
        if not NAME_RE.match(name):
            errors.append(ConfigError(path, f"bad service name {name!r}: use letters, digits "
                                      "and _ . @ - (not first)"))
            continue
        loaded = _read_toml(path, errors)
        if loaded is None:
            continue
        data, text = loaded
        texts[name] = text
        before = len(errors)
        service = _service(name, path, data, text, directory, errors)
        parsed[name] = service
        if len(errors) == before:
            services[name] = service
    _check_graph(directory, services, parsed, texts, errors)
    return Config(directory, services, settings), errors


def _check_graph(directory: str, services: dict[str, ServiceConfig],
                 parsed: dict[str, ServiceConfig], texts: dict[str, str],
                 errors: list[ConfigError]) -> None:
    known = set(services)
    for name, service in parsed.items():
        for key, deps in (("requires", service.requires), ("wants", service.wants)):
            for dep in deps:
                if dep not in known and dep != name:
                    path = os.path.join(directory, dep + ".toml")
                    reason = ("which is invalid" if os.path.exists(path)
                              else "no such service")
                    errors.append(ConfigError(service.path, f"{dep}: {reason}", key=key,
                                              line=_key_line(texts[name], key)))
    # Self-dependencies are reported by _service already.
    cycle = find_cycle({name: [d for d in s.after if d in parsed and d != name]
                        for name, s in parsed.items()})
    if cycle:
        first = parsed[cycle[0]]
        key = "requires" if cycle[1] in first.requires else "wants"
        errors.append(ConfigError(first.path, "dependency cycle: " + " -> ".join(cycle), key=key,
                                  line=_key_line(texts[cycle[0]], key)))


def load(directory: str) -> Config:
    """Read a configuration directory; raise ConfigInvalid listing every error."""
    config, errors = read(directory)
    if errors:
        raise ConfigInvalid(errors)
    return config
