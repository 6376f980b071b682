"""Reading a configuration directory and checking all of it before anything starts.

Every problem is collected, not just the first: `roost check` prints them all,
and `roost up` refuses to start anything while one remains. Each error names the
file, the line (tomllib reports none for values, so the line of a key is found
by reading the file's text), and the key.
"""

from __future__ import annotations

import os
import re
import sys

from roost.config import conditions, probes, process, sockets, units
from roost.config import templates as tpl
from roost.config.check import (
    SERVICE_KEYS,
    SETTINGS_KEYS,
    SHOWN,
    checked,
    known_group,
    known_user,
    shown,
)
from roost.config.errors import SETTINGS_FILE, ConfigError, ConfigInvalid
from roost.core.conditions import KEYS as CONDITION_KEYS
from roost.core.graph import find_cycle
from roost.core.model import COMMAND_KEYS, Config, ServiceConfig, Settings
from roost.kernel.spawn import find_executable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

# SERVICE_KEYS, with the checkers of the modules built on check.py's.
MAX_SERVICES = 10000  # instances named by requirements stop here, whatever the files say
CHECKERS = {**SERVICE_KEYS, "ready": probes.ready, "health": probes.health,
            "sockets": sockets.sockets,
            **dict.fromkeys(CONDITION_KEYS, conditions.paths), **process.KEYS}


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
    return _parse_toml(path, text, errors)


def _parse_toml(path: str, text: str,
                errors: list[ConfigError]) -> tuple[dict[str, Any], str] | None:
    import tomllib  # noqa: PLC0415 - lazy (memory): the supervisor never loads it (reader.py)

    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        line = _decode_error_line(message)
        if line is None and "end of document" in message:
            line = max(1, len(text.splitlines()))  # where the parser gave up
        message = re.sub(r"\s*\(at .*\)$", "", message)
        name = os.path.basename(path).removesuffix(".toml")
        errors.append(ConfigError(path, f"TOML syntax: {message}{units.hint(name, text)}",
                                  line=line))
    except RecursionError:
        # tomllib descends once per level of nesting; the file is refused, roost is not.
        errors.append(ConfigError(path, "TOML: arrays or tables nested too deeply"))
    except ValueError:
        # Python's int() refuses more than sys.get_int_max_str_digits() digits, and
        # tomllib lets that ValueError through without a line.
        errors.append(ConfigError(path, f"TOML: an integer has more than "
                                  f"{sys.get_int_max_str_digits()} digits",
                                  line=_long_number_line(text)))
    return None


def _long_number_line(text: str) -> int | None:
    """The line of the first run of digits too long for int(), 1-based."""
    limit = sys.get_int_max_str_digits()
    for number, line in enumerate(text.splitlines(), 1):
        if re.search(rf"[0-9](?:_?[0-9]){{{limit},}}", line):
            return number
    return None


def _unknown(path: str, text: str, key: str, known: dict[str, Any]) -> ConfigError:
    import difflib  # noqa: PLC0415 - lazy (start-up): the error path only

    if len(key) > SHOWN:
        return ConfigError(path, f"unknown key {shown(key)}", line=_key_line(text, key))
    close = difflib.get_close_matches(key, list(known), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    if key in ("Unit", "Service", "Install") or key.startswith("program:"):
        hint = units.hint(os.path.basename(path).removesuffix(".toml"), f"[{key}]")
    return ConfigError(path, f"unknown key{hint}", key=key, line=_key_line(text, key))


# -- services ----------------------------------------------------------------


def _service(name: str, path: str, data: dict[str, Any], text: str, directory: str,
             errors: list[ConfigError]) -> ServiceConfig:
    def error(key: str | None, message: str) -> None:
        errors.append(ConfigError(path, message, key=key,
                                  line=_key_line(text, key) if key else None))

    values: dict[str, Any] = {}
    for key, value in data.items():
        checker = CHECKERS.get(key)
        if checker is None:
            errors.append(_unknown(path, text, key, SERVICE_KEYS))
            continue
        try:
            values[key] = checked(checker, value)
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
        if key in CONDITION_KEYS:
            service.conditions += [[key, spec] for spec in value]
        elif key in process.DIRECTORY_KEYS:
            kind = key.split("_directory")[0]
            service.directories[kind] = [values.get(f"{kind}_directory", []),
                                         values.get(f"{kind}_directory_mode", 0o755)]
        elif key not in ("command", "shell"):
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
    if service.type != "notify" and "notify_access" in values:
        error("notify_access", "only a notify service has a notify socket")
    if service.type != "notify" and "watchdog_sec" in values:
        error("watchdog_sec", "only a notify service can send WATCHDOG=1")
    if service.type != "notify" and service.fd_store_max:
        error("fd_store_max", "only a notify service can send FDSTORE=1")
    if service.ready.startswith("tcp:") and service.ready in {
            f"tcp:[{h}]:{p}" if k == "tcp6" else f"tcp:{h}:{p}" for k, h, p, *_ in
            service.sockets if k in ("tcp", "tcp6")}:
        error("ready", "names one of its own sockets: roost accepts there itself, so the "
              "service would be ready at once")
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

    for key, account, known in (("user", service.user, known_user),
                                ("group", service.group, known_group)):
        if account is not None:
            try:
                known(account)
            except ValueError as exc:
                error(key, str(exc))

    if argv:
        _runnable(service, argv[0], "command", error)
    for key in COMMAND_KEYS:
        for flags, words in getattr(service, key):
            # A program named by a variable is known at its start only; "-": may be missing.
            if "-" not in flags and "$" not in words[0]:
                _runnable(service, words[0], key, error)
    if service.remain_after_exit and service.type != "oneshot":
        error("remain_after_exit", "only a oneshot exits and may stay up")
    if service.exec_reload and service.reload_signal is not None:
        error("reload_signal", "exec_reload says how to reload already: set one of the two")
    if service.health is not None:
        if service.type == "oneshot":
            error("health", "a oneshot is never up to be probed")
        elif service.health.kind == "command":
            _runnable(service, service.health.argv[0], "health", error)
    return service


def _runnable(service: ServiceConfig, name: str, key: str,
              error: Callable[[str | None, str], None]) -> None:
    """Report `name` under `key` unless the service's PATH and directory find it executable."""
    path_var = service.environment.get("PATH", os.environ.get("PATH", os.defpath))
    program = name
    if "/" in program and not os.path.isabs(program):
        program = os.path.join(service.working_directory or "", program)
    found = find_executable(program, path_var)
    what = "command" if key == "command" else f"{key} command"
    if found is None or not os.path.exists(found):
        error(key, f"{what} not found: {name}")
    elif not os.access(found, os.X_OK) or os.path.isdir(found):
        error(key, f"not executable: {found}")
    elif (interpreter := _interpreter(found)) and not os.path.exists(interpreter):
        # exec fails with ENOENT for a missing interpreter, naming the script, not it.
        error(key, f"{what} {name}: its #! interpreter {interpreter} does not exist")


def _interpreter(path: str) -> str | None:
    """The program a script's `#!` line names, or None for a binary or no such line."""
    try:
        with open(path, "rb") as f:
            head = f.read(256)
    except OSError:
        return None
    if not head.startswith(b"#!"):
        return None
    words = head[2:].split(b"\n", 1)[0].split()
    return os.fsdecode(words[0]) if words else None


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
            setattr(settings, key, checked(checker, value))
        except ValueError as exc:
            errors.append(ConfigError(path, str(exc), key=key, line=_key_line(text, key)))
    if settings.log_dir and not os.path.isabs(settings.log_dir):
        # Like working_directory: relative to the configuration, not to roost's cwd.
        settings.log_dir = os.path.join(os.path.dirname(path), settings.log_dir)
    if settings.control_group is not None:
        try:
            known_group(settings.control_group)
        except ValueError as exc:
            errors.append(ConfigError(path, str(exc), key="control_group",
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
    warnings: list[str] = []
    found = units.services(directory, entries, errors, warnings)
    batch = {name for name, _ in found}
    templates = {name: path for name, path in found if name.endswith("@")}
    queue = [(name, path) for name, path in found if not name.endswith("@")]
    queue += _listed_instances(templates, [n for n, _ in queue], errors)
    seen = {name for name, _ in queue}
    real = {os.path.realpath(p) for p in templates.values()}
    for name, path in queue:  # grows while instances are named by requires and wants
        # A symlink NAME@I.toml -> NAME@.toml reads as the template it is.
        from_template = os.path.realpath(path) in real
        got = _one(name, path, from_template, batch, directory, warnings, errors)
        if got is None:
            continue
        service, text, valid = got
        texts[name] = text
        parsed[name] = service
        if valid:
            services[name] = service
        for dep in (*service.requires, *service.wants):
            template = tpl.template_of(dep, templates)
            if template is not None and dep not in seen and len(seen) < MAX_SERVICES:
                seen.add(dep)
                queue.append((dep, template))
    _check_graph(directory, services, parsed, texts, errors)
    return Config(directory, services, settings, warnings), errors


def _listed_instances(templates: dict[str, str], names: list[str],
                      errors: list[ConfigError]) -> list[tuple[str, str]]:
    """The instances a .toml template's `instances` key lists, and not given otherwise."""
    out = []
    for template, path in templates.items():
        if not path.endswith(".toml"):
            continue
        loaded = _read_toml(path, [])  # its errors are told when an instance is read
        if loaded is None or "instances" not in loaded[0]:
            continue
        try:
            listed = checked(tpl.instances, loaded[0]["instances"])
        except ValueError as exc:
            errors.append(ConfigError(path, str(exc), key="instances",
                                      line=_key_line(loaded[1], "instances")))
            continue
        out += [(template + i, path) for i in listed if template + i not in names]
    return out


def _one(name: str, path: str, from_template: bool, batch: set[str], directory: str,
         warnings: list[str], errors: list[ConfigError],
         ) -> tuple[ServiceConfig, str, bool] | None:
    """One service read from its file (an instance: from its template); None if unreadable."""
    origins: dict[str, tuple[str, str]] | None = None
    if path.endswith(".service"):
        got = units.unit(path, batch, warnings, errors, name if from_template else None)
        if got is None:
            return None
        text, origins = got
        loaded = _parse_toml(path, text, errors)
    else:
        loaded = _read_toml(path, errors)
    if loaded is None:
        return None
    data, text = loaded
    here: list[ConfigError] = []
    if "@" in name and not name.endswith("@") and path.endswith(".toml"):
        if from_template:
            data.pop("instances", None)
        data, refused = tpl.expanded(data, name)
        here += [ConfigError(path, f"{name}: {why}", key=key, line=_key_line(text, key))
                 for key, why in refused]
    service = _service(name, path, data, text, directory, here)
    if origins is not None:
        here = [_in_unit(e, origins) for e in here]
    errors += here
    return service, text, not here


def _in_unit(error: ConfigError, origins: dict[str, tuple[str, str]]) -> ConfigError:
    """An error in a unit's mapped key, told at the unit's line and directive."""
    if error.key not in origins:
        return ConfigError(error.path, error.message, key=error.key)
    file, line = units.location(origins[error.key][0])
    return ConfigError(file, error.message, key=origins[error.key][1], line=line)


def _check_graph(directory: str, services: dict[str, ServiceConfig],
                 parsed: dict[str, ServiceConfig], texts: dict[str, str],
                 errors: list[ConfigError]) -> None:
    known = set(services)
    for name, service in parsed.items():
        for key, deps in (("requires", service.requires), ("wants", service.wants)):
            for dep in deps:
                if dep not in known and dep != name:
                    path = os.path.join(directory, dep + ".toml")
                    prefix, at, instance = dep.partition("@")
                    reason = ("which is invalid" if os.path.exists(path)
                              else f"no such service, nor a template {prefix}@.toml or "
                              f"{prefix}@.service" if at and instance else "no such service")
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
