"""The systemd unit file format, read as systemd reads it: syntax, drop-ins, specifiers.

systemd.syntax(7): `[Section]` headers, `Key=Value` lines, `#` and `;` comment lines, a
trailing backslash joining the next line. systemd.unit(5): the drop-in directories and
their order, and the `%` specifiers. Shared by `roost import systemd` and by a
configuration directory's units and templates: one reading of the format for both.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping


class Refused(ValueError):
    """The unit cannot be imported: where (file, line), the directive and why."""

    def __init__(self, where: str, reason: str, directive: str | None = None):
        super().__init__(f"{where}: {reason}")
        self.where, self.reason, self.directive = where, reason, directive


def parse(text: str, path: str) -> list[tuple[str, str, str, int]]:
    """The assignments of a unit file: (section, key, value, line), in order."""
    out: list[tuple[str, str, str, int]] = []
    section = ""
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not pending and (not line or line[0] in "#;"):
            continue
        if pending and line[:1] in ("#", ";"):
            continue  # a comment inside a continued line is dropped, as systemd does
        if line.endswith("\\"):
            pending += line[:-1] + " "
            start = start or number
            continue
        line, first = pending + line, start or number
        pending, start = "", 0
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        if not sep or not section:
            raise Refused(f"{path}:{first}", f"not an assignment in a section: {line[:60]!r}")
        out.append((section, key.strip(), value.strip(), first))
    return out


def specifier(spec: str, specifiers: Mapping[str, str], where: str) -> str:
    """What `%` followed by `spec` stands for; Refused if nothing here."""
    if spec == "%":
        return specifiers.get("%", "%")  # "%%" where the result is itself a template
    if spec not in specifiers:
        raise Refused(where, f"the specifier %{spec} has no value here")
    return specifiers[spec]


def expand(text: str, specifiers: Mapping[str, str], where: str) -> str:
    """`text` with its `%` specifiers replaced, and nothing else (no escapes, no `$`)."""
    parts = text.split("%")
    out, i = [parts[0]], 1
    while i < len(parts):
        part = parts[i]
        if part == "" and i + 1 < len(parts):  # "%%"
            out.append("%" + parts[i + 1])
            i += 2
            continue
        if part == "":
            raise Refused(where, "a lone % at the end (write %% for a percent sign)")
        out.append(specifier(part[0], specifiers, where) + part[1:])
        i += 1
    return "".join(out)


def dropins(path: str) -> list[str]:
    """The drop-in files of the unit at `path`, in the order systemd applies them.

    systemd.unit(5): `NAME.service.d/*.conf` beside the unit, and for `a-b-c.service`
    also `a-.service.d` and `a-b-.service.d`, for `t@i.service` also `t@.service.d`,
    and `service.d` for every service. Files apply in the lexical order of their names
    whatever their directory; of two with the same name the more specific one wins.
    """
    directory, unit = os.path.split(path)
    chosen: dict[str, str] = {}
    for d in dropins_dirs(unit):  # least specific first: a more specific file replaces it
        try:
            entries = os.listdir(os.path.join(directory, d))
        except OSError:
            continue
        for entry in entries:
            if entry.endswith(".conf"):
                chosen[entry] = os.path.join(directory, d, entry)
    return [chosen[entry] for entry in sorted(chosen)]


def dropins_dirs(unit: str) -> list[str]:
    """The names of the drop-in directories of `unit` (NAME.service), least specific first."""
    name = unit.removesuffix(".service")
    dirs = ["service.d"]
    dirs += [name[:i + 1] + ".service.d" for i, c in enumerate(name) if c == "-"]
    prefix, at, instance = name.partition("@")
    if at and instance:
        dirs.append(f"{prefix}@.service.d")
    return [*dirs, unit + ".d"]


def assignments(path: str, unit: str | None = None) -> list[tuple[str, str, str, str]]:
    """The unit's assignments and then its drop-ins': (section, key, value, "file:line").

    `unit` names an instance read from its template at `path`: its drop-ins are its own.
    """
    out = []
    dropped = dropins(os.path.join(os.path.dirname(path), unit) if unit else path)
    for file in [path, *dropped]:
        try:
            with open(file, encoding="utf-8") as f:
                body = f.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise Refused(file, str(exc)) from None
        out += [(section, key, value, f"{file}:{line}")
                for section, key, value, line in parse(body, file)]
    return out


def specifiers_of(unit: str) -> dict[str, str]:
    """The specifiers systemd.unit(5) gives a system unit named `unit`, resolved here.

    %u %U %h are the manager's own user, as systemd's system manager gives them.
    """
    import pwd  # noqa: PLC0415 - lazy (start-up): reading units only

    uid = os.getuid()
    try:
        user, home = pwd.getpwuid(uid).pw_name, pwd.getpwuid(uid).pw_dir
    except KeyError:
        user, home = str(uid), "/"
    name = unit.removesuffix(".service")
    prefix, _, instance = name.partition("@")
    return {"n": unit, "N": name, "p": prefix, "P": prefix.replace("-", "/"), "i": instance,
            "I": instance.replace("-", "/"), "j": prefix.rsplit("-", 1)[-1], "t": "/run",
            "S": "/var/lib", "C": "/var/cache", "L": "/var/log", "E": "/etc", "T": "/tmp",
            "V": "/var/tmp", "u": user, "U": str(uid), "h": home}
