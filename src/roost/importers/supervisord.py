"""`roost import supervisord FILE`: a supervisord configuration as roost service files.

Read the way supervisord reads it: an INI file whose values lose a `;` or `#` comment
that follows whitespace, `[include] files` globbed beside the including file, and
Python %-expansions (`%(program_name)s`, `%(process_num)02d`, `%(here)s`,
`%(ENV_X)s`, `%(group_name)s`, `%(numprocs)d`, `%(host_node_name)s`) made per
process, the program's own `environment` becoming `ENV_` names for its command. A
program with `numprocs = N` becomes N services named by `process_name`.

Each service file says what it came from. A key mapped only approximately carries a
comment saying how it differs; a key roost has no use for is named in a warning. An
`[eventlistener:x]` or `[fcgi-program:x]` section is refused, with the reason: roost
runs neither.
"""

from __future__ import annotations

import configparser
import glob
import os
import platform
import shlex

from roost.core import sigs
from roost.importers.output import Service, arguments, write

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    Getter = Callable[[str, str], str]

TRUE = ("true", "yes", "on", "1")
FALSE = ("false", "no", "off", "0")
REFUSED = {
    "eventlistener": "roost has no event listener protocol",
    "fcgi-program": "roost does not open FastCGI sockets for a program",
}
# supervisord's own sections: roost's control socket, log and settings replace them.
OWN = ("supervisord", "supervisorctl", "unix_http_server", "inet_http_server", "include",
       "ctlplugin", "rpcinterface")
LOG_KEYS = {f"{stream}_{key}" for stream in ("stdout", "stderr") for key in (
    "logfile", "logfile_maxbytes", "logfile_backups", "capture_maxbytes", "events_enabled",
    "syslog")}
MAPPED = {"command", "process_name", "numprocs", "numprocs_start", "priority", "autostart",
          "autorestart", "startsecs", "startretries", "exitcodes", "stopsignal",
          "stopwaitsecs", "stopasgroup", "killasgroup", "user", "redirect_stderr",
          "directory", "umask", "environment", "serverurl"} | LOG_KEYS


class NotImportable(ValueError):
    """The file cannot be imported; the message names the file and section."""


def _parser() -> configparser.RawConfigParser:
    # As supervisord's own parser: comments after whitespace, duplicates tolerated.
    return configparser.RawConfigParser(inline_comment_prefixes=(";", "#"), strict=False)


def _read(path: str) -> list[tuple[str, dict[str, str], str]]:
    """Every section of `path` and its includes: (section, options, the file it is in)."""
    parser = _parser()
    try:
        with open(path, encoding="utf-8") as f:
            parser.read_file(f)
    except (OSError, UnicodeDecodeError, configparser.Error) as exc:
        raise NotImportable(f"{path}: {exc}") from None
    here = os.path.dirname(os.path.abspath(path))
    sections = [(s, dict(parser.items(s)), path) for s in parser.sections()]
    if parser.has_option("include", "files"):
        files = _expand(parser.get("include", "files"), {"here": here}, path, "include")
        for pattern in files.split():
            for included in sorted(glob.glob(os.path.join(here, pattern))):
                sections += _read(included)
    return sections


def _expand(value: str, names: Mapping[str, object], path: str, section: str) -> str:
    try:
        return value % names
    except (KeyError, ValueError, TypeError) as exc:
        raise NotImportable(f"{path}: [{section}]: cannot expand {value!r}: {exc}") from None


def _bool(value: str, path: str, section: str, key: str) -> bool:
    if value.lower() in TRUE:
        return True
    if value.lower() in FALSE:
        return False
    raise NotImportable(f"{path}: [{section}] {key}: not a boolean: {value!r}")


def _int(value: str, path: str, section: str, key: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise NotImportable(f"{path}: [{section}] {key}: not an integer: {value!r}") from None


def _environment(text: str) -> dict[str, str]:
    """KEY=val,KEY2="a, b" as supervisord splits it (shlex, quotes allow commas)."""
    lexer = shlex.shlex(text)
    lexer.wordchars += "/.+-():"
    tokens = list(lexer)
    pairs: dict[str, str] = {}
    for i in range(0, len(tokens), 4):
        key_eq_value = tokens[i:i + 3]
        if len(key_eq_value) != 3 or key_eq_value[1] != "=":
            raise ValueError(f"unexpected end of key/value pairs in {text!r}")
        pairs[key_eq_value[0]] = key_eq_value[2].strip("'\"")
    return pairs


def convert(path: str, environ: Mapping[str, str]) -> tuple[list[Service], list[str]]:
    """Every process of every program in `path`, as roost services, and what was refused."""
    sections = _read(path)
    groups: dict[str, str] = {}
    notes: list[str] = []
    for section, options, _ in sections:
        kind, _, name = section.partition(":")
        if kind == "group":
            for program in options.get("programs", "").split(","):
                groups[program.strip()] = name
            notes.append(f"[{section}]: roost has no groups; each of its programs is a "
                         "service of its own")
        elif kind in REFUSED:
            notes.append(f"[{section}] refused: {REFUSED[kind]}")
        elif kind not in ("program", *OWN):
            notes.append(f"[{section}] ignored: not a section supervisord defines")
    services: list[Service] = []
    env_names = {f"ENV_{k}": v for k, v in environ.items()}
    for section, options, source in sections:
        kind, _, program = section.partition(":")
        if kind == "program":
            services += _program(source, section, program, options, groups, env_names)
    return services, notes


def _program(path: str, section: str, program: str, options: dict[str, str],
             groups: dict[str, str], env_names: dict[str, str]) -> list[Service]:
    if "command" not in options:
        raise NotImportable(f"{path}: [{section}] has no command")
    here = os.path.dirname(os.path.abspath(path))
    names: dict[str, object] = {"here": here, "program_name": program,
                                "group_name": groups.get(program, program),
                                "host_node_name": platform.node(), **env_names}

    def get(key: str, default: str) -> str:
        return _expand(options.get(key, default), names, path, section)

    numprocs = _int(get("numprocs", "1"), path, section, "numprocs")
    start = _int(get("numprocs_start", "0"), path, section, "numprocs_start")
    process_name = options.get("process_name", "%(program_name)s")
    if numprocs > 1 and "%(process_num)" not in process_name:
        raise NotImportable(f"{path}: [{section}] numprocs = {numprocs} needs %(process_num) "
                           "in process_name")
    made = []
    for num in range(start, start + numprocs):
        names.update(process_num=num, numprocs=numprocs)
        environment = _environment(_expand(options.get("environment", ""), names, path, section))
        local = {**names, **{f"ENV_{k}": v for k, v in environment.items()}}
        name = _expand(process_name, names, path, section)
        service = Service(name, f"{path} [{section}]", "supervisord")
        command = _expand(options["command"], local, path, section)
        try:
            service.set("command", shlex.split(command))
        except ValueError as exc:
            raise NotImportable(f"{path}: [{section}] command: {exc}") from None
        _attributes(service, options, get, environment, path, section)
        made.append(service)
    return made


def _attributes(service: Service, options: dict[str, str], get: Getter,
                environment: dict[str, str], path: str, section: str) -> None:
    if "autostart" in options:
        service.set("autostart", _bool(get("autostart", "true"), path, section, "autostart"))
    restart = get("autorestart", "unexpected").lower()
    codes = [c.strip() for c in get("exitcodes", "0").split(",") if c.strip()]
    if restart in TRUE:
        service.set("restart", "always")
    elif restart in FALSE:
        service.set("restart", "never")
    elif restart == "unexpected":
        service.set("restart", "on-failure", "" if codes == ["0"] else
                    f"supervisord: exit codes {','.join(codes)} are expected; roost restarts "
                    "on any but 0")
    else:
        raise NotImportable(f"{path}: [{section}] autorestart: {restart!r}")
    if "startretries" in options:
        retries = _int(get("startretries", "3"), path, section, "startretries")
        service.set("restart_limit", retries + 1, f"startretries = {retries}: supervisord "
                    "counts failed starts in a row, roost starts within restart_window")
    if "stopsignal" in options:
        signal = get("stopsignal", "TERM")
        try:
            service.set("stop_signal", sigs.name(sigs.number(signal)).removeprefix("SIG"))
        except ValueError:
            raise NotImportable(f"{path}: [{section}] stopsignal: {signal!r}") from None
    if "stopwaitsecs" in options:
        wait = _int(get("stopwaitsecs", "10"), path, section, "stopwaitsecs")
        # supervisord's 0 is SIGKILL at once; roost's stop_timeout = 0 is no limit.
        service.set("stop_timeout", wait or 0.001,
                    "" if wait else "stopwaitsecs=0: SIGKILL right after the stop signal")
    for key, roost_key in (("user", "user"), ("directory", "working_directory")):
        if key in options:
            service.set(roost_key, get(key, ""))
    if "umask" in options:
        service.set("umask", get("umask", "022"))
    if environment:
        service.set("environment", environment)
    if _bool(get("redirect_stderr", "false"), path, section, "redirect_stderr"):
        service.set("stderr", "stdout")  # one stream, in the order written, as supervisord's
    if "stopasgroup" in options and not _bool(get("stopasgroup", "false"), path, section,
                                              "stopasgroup"):
        service.lines.append("# stopasgroup = false: roost stops every process of the "
                             "service, as stopasgroup = true would")
    if "startsecs" in options:
        service.warnings.append(f"startsecs = {options['startsecs']}: roost counts a simple "
                                "service up once its command runs")
    if "priority" in options:
        service.warnings.append(f"priority = {options['priority']}: roost orders services "
                                "by requires and wants only")
    logs = sorted(k for k in options if k in LOG_KEYS)
    if logs:
        service.warnings.append(", ".join(logs) + ": roost logs each service to "
                                "log_dir/NAME.log (roost.toml's log_dir, log_max_bytes, log_keep)")
    for key in sorted(set(options) - MAPPED):
        service.warnings.append(f"{key}: not a supervisord program key roost knows")


def main(argv: list[str]) -> int:
    """`roost import supervisord FILE [-o DIR]`: print the services, or write one file each."""
    parsed = arguments(argv, "usage: roost import supervisord FILE [-o DIR]")
    if parsed is None or len(parsed[0]) != 1:
        if parsed is not None:
            os.write(2, b"usage: roost import supervisord FILE [-o DIR]\n")
        return 2
    (path,), out = parsed
    try:
        services, notes = convert(path, os.environ)
    except NotImportable as exc:
        os.write(2, f"roost import: {exc}\n".encode())
        return 1
    for note in notes:
        os.write(2, f"roost import: {note}\n".encode())
    code = write(services, out)
    os.write(2, f"roost import: {len(services)} services from {path}\n".encode())
    return code
