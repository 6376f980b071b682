"""The files of a configuration directory: which roost reads, and what it says of the rest.

A directory holds `NAME.toml` service files and `NAME.service` systemd units. A unit is
read by `roost import systemd`'s own parser and mapping, with its drop-ins, and becomes
the TOML a service file holds: one reading of a unit for both, so whatever the importer
learns to map, `roost up` runs. Any other file is named in a warning, with a hint where
it looks like another format. Dotfiles and editor backups (`NAME~`) stay silent: they
are a directory's ordinary litter, never a service someone meant (`.x.toml` is still
refused as a bad name: that one was meant).
"""

from __future__ import annotations

import os
import re

from roost.config.errors import SERVICE_FILES, SETTINGS_FILE, ConfigError
from roost.core.model import SERVICE_NAME

NAME_RE = re.compile(SERVICE_NAME + r"\Z")
UNIT_HINT = ("this looks like a systemd unit: name it {name}.service or use "
             "`roost import systemd`")
SUPERVISORD_HINT = ("this looks like a supervisord configuration: use `roost import "
                    "supervisord`")


def services(directory: str, entries: list[str], errors: list[ConfigError],
             warnings: list[str]) -> list[tuple[str, str]]:
    """The (name, path) of each service file and unit among `entries`, sorted by name.

    A name given by both `NAME.toml` and `NAME.service` is an error; a file roost does
    not read is named in `warnings`.
    """
    found: dict[str, str] = {}
    twice: set[str] = set()  # neither of the two is read: which one was meant is unknown
    for entry in entries:
        path = os.path.join(directory, entry)
        if entry == SETTINGS_FILE or entry.endswith("~"):
            continue
        name, suffix = _split(entry)
        if suffix is None:
            if not entry.startswith(".") and not _dropin_dir(directory, entry, entries):
                warnings.append(f"{path}: not read: {_unread(path, entry)}")
            continue
        if not NAME_RE.match(name):
            errors.append(ConfigError(path, f"bad service name {name!r}: use letters, digits "
                                      "and _ . @ - (not first)"))
            continue
        if name in found:
            errors.append(ConfigError(path, f"{os.path.basename(found[name])} names the same "
                                      "service: keep one of the two"))
            twice.add(name)
            continue
        found[name] = path
    return sorted((name, path) for name, path in found.items() if name not in twice)


def _split(entry: str) -> tuple[str, str | None]:
    for suffix in SERVICE_FILES:
        if entry.endswith(suffix) and len(entry) > len(suffix):
            return entry[: -len(suffix)], suffix
    return entry, None


def _dropin_dir(directory: str, entry: str, entries: list[str]) -> bool:
    """Whether `entry` is a directory of drop-ins that applies to some unit here."""
    if not entry.endswith("service.d") or not os.path.isdir(os.path.join(directory, entry)):
        return False
    units = [e for e in entries if e.endswith(".service")]
    from roost.importers import unitfile  # noqa: PLC0415 - lazy (memory): a directory of units only

    return any(entry in unitfile.dropins_dirs(u) for u in units)


def _unread(path: str, entry: str) -> str:
    """Why `entry` is not read, and what its owner probably meant."""
    lower = entry.lower()
    if os.path.isdir(path):
        if entry.endswith(".d"):
            return "a drop-in directory of no unit here"
        return "a directory"
    suffix = _split(lower)[1]
    if suffix is not None:
        return f"roost reads lower-case suffixes: name it {entry[: -len(suffix)]}{suffix}"
    if re.search(r"\.(socket|timer|target|path|mount|slice|device|swap)$", entry):
        return "roost reads .service units only"
    text = _head(path)
    if re.search(r"^\s*\[program:", text, re.MULTILINE):
        return SUPERVISORD_HINT
    if re.search(r"^\s*\[Service\]", text, re.MULTILINE):
        return UNIT_HINT.format(name=entry.rsplit(".", 1)[0])
    return "roost reads NAME.toml and NAME.service"


def _head(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return f.read(4096).decode("utf-8", "replace")
    except OSError:
        return ""


def hint(name: str, text: str) -> str:
    """A hint for a .toml file that holds another format, or ""."""
    if re.search(r"^\s*\[program:", text, re.MULTILINE):
        return f" ({SUPERVISORD_HINT})"
    if re.search(r"^\s*\[(Unit|Service|Install)\]", text, re.MULTILINE):
        return f" ({UNIT_HINT.format(name=name)})"
    return ""


def unit(path: str, batch: set[str], warnings: list[str], errors: list[ConfigError],
         name: str | None = None) -> tuple[str, dict[str, tuple[str, str]]] | None:
    """A unit as the text of a service file, with where each key came from; None if refused.

    `batch` holds the services of the directory: a requirement outside it (a target, a
    unit roost does not run) is left out, with a warning. `name`: an instance of the
    template at `path`.
    """
    from roost.importers import systemd, unitfile  # noqa: PLC0415 - lazy (memory): a directory of units only

    try:
        service = systemd.convert(path, batch, name)
    except unitfile.Refused as exc:
        file, line = location(exc.where)
        errors.append(ConfigError(file, exc.reason, key=exc.directive, line=line))
        return None
    warnings += [f"{path}: ignored: {w}" for w in service.warnings]
    return service.text(), service.origins


def location(where: str) -> tuple[str, int | None]:
    """A "file:line" (or a bare file) as file and line."""
    file, sep, line = where.rpartition(":")
    if sep and line.isdigit():
        return file, int(line)
    return where, None
