"""`roost import systemd UNIT...`: systemd service units as roost service files.

A unit is read as systemd reads it (systemd.syntax(7)): `[Section]` headers, `Key=Value`
lines, `#` and `;` comment lines, a trailing backslash joining the next line, an empty
assignment clearing a list. Command lines are split as systemd splits them
(systemd.service(5), "Command lines"): words on whitespace, single and double quotes,
C escapes, `%` specifiers, and `$VAR` / `${VAR}` from the unit's own `Environment=` and
`EnvironmentFile=` (read at import: the value the file holds then, said in a comment).

What roost can do is mapped, approximations commented; what roost has no use for (the
sandboxing directives, `[Install]`) is named in a warning; what roost cannot do is
refused with the reason: a unit whose meaning would change without it (commands run
before or after the main one, several main commands, `Type=dbus`) is not imported.
"""

from __future__ import annotations

import os
import re

from roost.core import sigs
from roost.core.model import KILL_MODES
from roost.importers.cmdline import environment, environment_file, split, unescape
from roost.importers.output import Service, arguments, write
from roost.importers.unitfile import Refused, assignments, specifiers_of

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping


TYPES = {"simple": "simple", "exec": "simple", "forking": "forking", "oneshot": "oneshot",
         "notify": "notify", "notify-reload": "notify", "idle": "simple"}
RESTARTS = {"no": "never", "always": "always", "on-success": "on-success",
            "on-failure": "on-failure", "on-abnormal": "on-abnormal", "on-abort": "on-abort",
            "on-watchdog": "on-watchdog"}
# Commands systemd runs around the main one, and roost's key for each (core/commands.py).
AROUND = {"ExecCondition": "exec_condition", "ExecStartPre": "exec_start_pre",
          "ExecStartPost": "exec_start_post", "ExecReload": "exec_reload",
          "ExecStop": "exec_stop", "ExecStopPost": "exec_stop_post"}
# The reload that only signals the main process, as units write it: reload_signal instead.
_KILL_MAINPID = re.compile(r"(?:/usr)?(?:/bin/)?kill\s+(?:-s\s+)?-?(?:SIG)?([A-Z0-9]+)\s+"
                           r"\$\{?MAINPID\}?")
def seconds(value: str, where: str) -> float:
    """A systemd time span ("90", "1min 30s", "infinity") in seconds; 0 for infinity."""
    if value in ("infinity", ""):
        return 0.0
    units = {"us": 1e-6, "ms": 1e-3, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600,
             "hr": 3600, "d": 86400}
    parts = re.findall(r"([0-9]+(?:\.[0-9]+)?)\s*([a-z]*)", value)
    if (not re.fullmatch(r"(\s*[0-9]+(\.[0-9]+)?\s*[a-z]*)+\s*", value)
            or any(unit and unit not in units for _, unit in parts)):
        raise Refused(where, f"not a time span: {value!r}")
    return sum(float(number) * units.get(unit or "s", 1) for number, unit in parts)


def convert(path: str, batch: set[str] | None = None, name: str | None = None) -> Service:
    """One unit file, with its drop-ins, as a roost service; Refused says why it cannot be.

    A unit's environment is its own (Environment=, EnvironmentFile=), never the
    importer's: `$VAR` expands from those alone. With `batch`, the units imported
    together, a Requires= or Wants= outside it is left out with a warning (roost
    refuses a requirement it does not have).
    """
    unit = os.path.basename(path) if name is None else f"{name}.service"
    name, _, suffix = unit.rpartition(".")
    if suffix != "service":
        raise Refused(path, "only .service units are imported")
    _, at, instance = name.partition("@")
    specifiers = specifiers_of(unit)
    if at and not instance:
        # A template becomes a NAME@.toml template: what depends on the instance is left
        # for roost to expand in each one (%n, a unit's name, is the service's plus .service).
        specifiers.update({"i": "%i", "I": "%I", "N": "%N", "n": "%N.service", "%": "%%"})
    service = Service(name, path, "systemd")
    values: dict[str, list[tuple[str, str]]] = {}
    for section, key, value, where in assignments(path, unit):
        if section not in ("Unit", "Service", "Install"):
            raise Refused(where, f"[{section}]: not a section of a service unit")
        if value == "":
            values.pop(key, None)  # an empty assignment resets the list
            continue
        values.setdefault(key, []).append((value, where))
    env: dict[str, str] = {}
    for spec, where in values.get("EnvironmentFile", []):
        pairs, note = environment_file(spec, where)
        env.update(pairs)
        service.lines.append(f"# {note}")
    for value, where in values.get("Environment", []):
        env.update(environment(value, specifiers, where))
    kind, where = values.get("Type", [("simple", path)])[-1]
    if kind not in TYPES:
        raise Refused(where, f"Type={kind}: roost cannot supervise it", "Type")
    starts = values.get("ExecStart", [])
    if not starts:
        raise Refused(path, "no ExecStart=", "ExecStart")
    if len(starts) > 1 and kind != "oneshot":
        raise Refused(starts[1][1], "several ExecStart= lines: only a oneshot may have them",
                      "ExecStart")
    if len(starts) > 1:
        # A oneshot's lines run in order, each once the one before exited 0: so do the
        # main command's exec_start_post, before the unit's own ExecStartPost= lines.
        values["ExecStartPost"] = starts[1:] + values.get("ExecStartPost", [])
    command, where = starts[0]
    flags = re.match(r"[-@:+!]*", command).group(0)  # type: ignore[union-attr]
    command = command[len(flags):]
    if "@" in flags or (("+" in flags or "!" in flags) and "User" in values):
        raise Refused(where, f"ExecStart={flags}...: roost has no equivalent of {flags!r}",
                      "ExecStart")
    argv = split(command, {} if ":" in flags else env, specifiers, where, runtime=":" in flags)
    if not argv:
        raise Refused(where, "an empty ExecStart=", "ExecStart")
    note = "a failing exit is not ignored by roost" if "-" in flags else \
        f"ExecStart={flags}: as root, which it is with no User=" if flags.strip(":-") else ""
    service.set("command", argv, note, at=(where, "ExecStart"))
    service.set("type", TYPES[kind], "" if kind in ("simple", "forking", "oneshot", "notify")
                else f"Type={kind}", at=(values.get("Type", [("", path)])[-1][1], "Type"))
    _service_keys(service, kind, values, env, specifiers)
    _around(service, values, env, specifiers)
    _unit_keys(service, values, batch)
    service.warnings += [f"{key}= (roost has no equivalent)" for key in sorted(values)
                         if key not in HANDLED]
    return service


# systemd's Condition*= and Assert*= that roost evaluates, and roost's key for each.
CONDITIONS = {f"{group}{name}": f"{group.lower()}_{key}"
              for group in ("Condition", "Assert")
              for name, key in (("PathExists", "path_exists"),
                                ("PathIsDirectory", "path_is_directory"),
                                ("FileNotEmpty", "file_not_empty"),
                                ("PathExistsGlob", "path_exists_glob"),
                                ("FileIsExecutable", "file_is_executable"))}
HANDLED = {*AROUND, "KillMode", "FinalKillSignal", "SendSIGKILL", "RemainAfterExit", "Type",
           "ExecStart", "Environment", "EnvironmentFile", "Restart", "RestartSec",
           "TimeoutStartSec", "TimeoutStopSec", "TimeoutSec", "User", "Group",
           "WorkingDirectory", "KillSignal", "PIDFile", "NotifyAccess", "MemoryMax",
           "TasksMax", "CPUWeight", "Requires", "Wants"}
HANDLED.update(CONDITIONS)
# LimitXXX= and the *Directory= family, each a roost key of its own.
LIMIT_DIRECTIVES = {f"Limit{name.upper()}": name for name in (
    "as", "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile",
    "nproc", "rss", "rtprio", "rttime", "sigpending", "stack")}
DIRECTORY_DIRECTIVES = {f"{kind.capitalize()}Directory": kind for kind in (
    "runtime", "state", "cache", "logs", "configuration")}
HANDLED.update(LIMIT_DIRECTIVES, DIRECTORY_DIRECTIVES,
               {f"{d}Mode" for d in DIRECTORY_DIRECTIVES},
               {"RuntimeDirectoryPreserve", "Nice", "OOMScoreAdjust", "UMask",
                "NoNewPrivileges", "SuccessExitStatus", "RestartPreventExitStatus"})


def _service_keys(service: Service, kind: str, values: dict[str, list[tuple[str, str]]],
                  env: Mapping[str, str], specifiers: Mapping[str, str]) -> None:
    def last(key: str) -> tuple[str, str] | None:
        return values[key][-1] if key in values else None

    if (got := last("Restart")) is not None:
        value, where = got
        if value not in RESTARTS:
            raise Refused(where, f"Restart={value}: not a policy", "Restart")
        service.set("restart", RESTARTS[value], at=(where, "Restart"))
    elif kind != "oneshot":
        service.set("restart", "never", "systemd's default, Restart=no")
    for key, roost_key in (("RestartSec", "restart_delay"), ("TimeoutStartSec", "start_timeout"),
                           ("TimeoutStopSec", "stop_timeout")):
        got = last(key) or (last("TimeoutSec") if key != "RestartSec" else None)
        if got is not None:
            service.set(roost_key, seconds(got[0], got[1]), at=(got[1], key))
    for key, roost_key in (("User", "user"), ("Group", "group"), ("PIDFile", "pid_file")):
        if (got := last(key)) is None:
            continue
        if key == "PIDFile" and kind != "forking":
            service.warnings.append(f"PIDFile={got[0]} (roost reads a pid file for forking "
                                    "services only)")
            continue
        service.set(roost_key, unescape(got[0], env, specifiers, got[1]), at=(got[1], key))
    if (got := last("WorkingDirectory")) is not None:
        directory = got[0].lstrip("-")
        if directory != "~":
            service.set("working_directory", unescape(directory, env, specifiers, got[1]),
                        at=(got[1], "WorkingDirectory"))
    for directive, key in (("KillSignal", "stop_signal"), ("FinalKillSignal", "final_kill_signal")):
        if (got := last(directive)) is not None:
            try:
                service.set(key, sigs.name(sigs.number(got[0])).removeprefix("SIG"),
                            at=(got[1], directive))
            except ValueError:
                raise Refused(got[1], f"{directive}={got[0]}: no such signal",
                              directive) from None
    _stop_keys(service, kind, values)
    if (got := last("NotifyAccess")) is not None:
        if kind in ("notify", "notify-reload"):
            service.set("notify_access", got[0], at=(got[1], "NotifyAccess"))
        else:
            service.warnings.append(f"NotifyAccess={got[0]} (only a notify service has a "
                                    "notify socket in roost)")
    if (got := last("MemoryMax")) is not None and got[0] != "infinity":
        service.set("memory_max", got[0], at=(got[1], "MemoryMax"))
    if (got := last("TasksMax")) is not None and got[0] != "infinity" and got[0].isdigit():
        service.set("pids_max", int(got[0]), at=(got[1], "TasksMax"))
    if (got := last("CPUWeight")) is not None and got[0].isdigit():
        service.set("cpu_weight", int(got[0]), at=(got[1], "CPUWeight"))
    _process_keys(service, values)
    for directive, key in (("SuccessExitStatus", "success_exit_status"),
                           ("RestartPreventExitStatus", "restart_prevent_exit_status")):
        ends = [word for value, _ in values.get(directive, []) for word in value.split()]
        if ends:
            # Codes as numbers, signals by name: what roost's key takes.
            service.set(key, [int(w) if w.isdigit() else w for w in ends],
                        at=(values[directive][-1][1], directive))
    if env and "Environment" in values:
        service.set("environment", dict(env), at=(values["Environment"][-1][1], "Environment"))


def _stop_keys(service: Service, kind: str, values: dict[str, list[tuple[str, str]]]) -> None:
    """KillMode=, SendSIGKILL=, RemainAfterExit=."""
    yes = ("yes", "true", "on", "1")
    if "KillMode" in values:
        mode, where = values["KillMode"][-1]
        if mode in KILL_MODES:
            service.set("kill_mode", mode, at=(where, "KillMode"))
        else:  # none: systemd itself warns that it is unsafe
            service.warnings.append(f"KillMode={mode} (roost stops every process, as "
                                    "control-group)")
    if "SendSIGKILL" in values:
        value, where = values["SendSIGKILL"][-1]
        service.set("send_sigkill", value.lower() in yes, at=(where, "SendSIGKILL"))
    if "RemainAfterExit" in values:
        value, where = values["RemainAfterExit"][-1]
        if kind == "oneshot":
            service.set("remain_after_exit", value.lower() in yes, at=(where, "RemainAfterExit"))
        elif value.lower() in yes:
            service.warnings.append(f"RemainAfterExit={value} (only a oneshot exits and "
                                    "stays up in roost)")


def _around(service: Service, values: dict[str, list[tuple[str, str]]], env: Mapping[str, str],
            specifiers: Mapping[str, str]) -> None:
    """ExecStartPre= and the other commands around the main one, each a roost key."""
    for directive, key in AROUND.items():
        lines = values.get(directive, [])
        if not lines:
            continue
        where = lines[-1][1]
        if directive == "ExecReload" and len(lines) == 1 and \
                (kill := _KILL_MAINPID.fullmatch(lines[0][0].lstrip("-@:+!").strip())):
            try:
                signal = sigs.name(sigs.number(kill.group(1))).removeprefix("SIG")
            except ValueError:
                raise Refused(where, f"ExecReload={lines[0][0]}: no such signal",
                              directive) from None
            service.set("reload_signal", signal, f"ExecReload={lines[0][0]}",
                        at=(where, directive))
            continue
        commands = []
        for value, at in lines:
            flags = re.match(r"[-@:+!]*", value).group(0)  # type: ignore[union-attr]
            # "!!" is "!" where ambient capabilities exist; roost runs either as root.
            # ":": no expansion at all; an unknown variable is left as written then too.
            words = split(value[len(flags):], {} if ":" in flags else env, specifiers, at,
                          runtime=True)
            if not words:
                raise Refused(at, f"an empty {directive}=", directive)
            flags = "".join(dict.fromkeys(flags.replace("!!", "!")))
            commands.append([flags + words[0], *words[1:]])
        service.set(key, commands, at=(where, directive))


def _process_keys(service: Service, values: dict[str, list[tuple[str, str]]]) -> None:
    """LimitXXX=, Nice=, OOMScoreAdjust=, UMask= and the *Directory= family."""
    def last(key: str) -> tuple[str, str] | None:
        return values[key][-1] if key in values else None

    limits = {}
    for directive, name in LIMIT_DIRECTIVES.items():
        if (got := last(directive)) is not None:
            # systemd writes infinity, N, or SOFT:HARD; roost's `limits` takes the same.
            limits[name] = int(got[0]) if got[0].isdigit() else got[0]
    if limits:
        where = next(values[d][-1][1] for d in LIMIT_DIRECTIVES if d in values)
        service.set("limits", limits, at=(where, "LimitNOFILE"))
    for directive, key in (("Nice", "nice"), ("OOMScoreAdjust", "oom_score_adjust")):
        if (got := last(directive)) is not None and got[0].lstrip("-").isdigit():
            service.set(key, int(got[0]), at=(got[1], directive))
    if (got := last("NoNewPrivileges")) is not None:
        yes = got[0].lower() in ("yes", "true", "on", "1")
        service.set("no_new_privileges", yes, at=(got[1], "NoNewPrivileges"))
    if (got := last("UMask")) is not None:
        service.set("umask", got[0].rjust(3, "0")[-4:], at=(got[1], "UMask"))
    for directive, kind in DIRECTORY_DIRECTIVES.items():
        names = [n for v, _ in values.get(directive, []) for n in v.split()]
        if names:
            service.set(f"{kind}_directory", names, at=(values[directive][-1][1], directive))
        if (got := last(f"{directive}Mode")) is not None:
            service.set(f"{kind}_directory_mode", got[0], at=(got[1], f"{directive}Mode"))
    if (got := last("RuntimeDirectoryPreserve")) is not None:
        preserve = {"yes": True, "true": True, "no": False, "false": False,
                    "restart": "restart"}.get(got[0].lower())
        if preserve is not None:
            service.set("runtime_directory_preserve", preserve,
                        at=(got[1], "RuntimeDirectoryPreserve"))


def _unit_keys(service: Service, values: dict[str, list[tuple[str, str]]],
               batch: set[str] | None) -> None:
    for key, roost_key in (("Requires", "requires"), ("Wants", "wants")):
        names = [n for v, _ in values.get(key, []) for n in v.split()]
        services = [n.removesuffix(".service") for n in names if n.endswith(".service")
                    and _in(batch, n.removesuffix(".service"))]
        others = [n for n in names if not n.endswith(".service")
                  or not _in(batch, n.removesuffix(".service"))]
        if services:
            service.set(roost_key, services, at=(values[key][-1][1], key))
        if others:
            service.warnings.append(f"{key}={' '.join(others)} (not a service imported with it)")
    for directive, key in CONDITIONS.items():
        if directive in values:  # `|` and `!` mean in roost what they mean in systemd
            service.set(key, [v for v, _ in values[directive]],
                        at=(values[directive][-1][1], directive))


def _in(batch: set[str] | None, name: str) -> bool:
    """Whether `name` is imported with the unit: itself, or an instance of a template that is."""
    return batch is None or name in batch or (
        "@" in name and name.partition("@")[0] + "@" in batch)


def main(argv: list[str]) -> int:
    """`roost import systemd UNIT... [-o DIR]`: print the services, or write one file each."""
    parsed = arguments(argv, "usage: roost import systemd UNIT.service... [-o DIR]")
    if parsed is None:
        return 2
    paths, out = parsed
    batch = {os.path.basename(p).removesuffix(".service") for p in paths}
    services = []
    for path in paths:
        try:
            services.append(convert(path, batch))
        except Refused as exc:
            os.write(2, f"roost import: refused: {exc}\n".encode())
    code = write(services, out)
    os.write(2, f"roost import: {len(services)} of {len(paths)} units imported\n".encode())
    return code or (1 if len(services) < len(paths) else 0)
