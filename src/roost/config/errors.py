"""What a configuration error is: the one part of config checking a running roost keeps.

The checking itself (load.py, check.py, tomllib) runs in the reader's child and in
`roost check`; the supervisor only receives its errors, and, as a system's init,
sets aside the services they reach so that the others can start (`degrade`).
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from roost.core.model import Config


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
        return one_line(f"{where}: {self.key}: {self.message}" if self.key
                        else f"{where}: {self.message}")

    def __repr__(self) -> str:
        return f"ConfigError({str(self)!r})"


class ConfigInvalid(Exception):
    """The configuration has errors; `errors` lists every one."""

    def __init__(self, errors: list[ConfigError]):
        super().__init__("\n".join(str(e) for e in errors))
        self.errors = errors


SETTINGS_FILE = "roost.toml"
SERVICE_FILES = (".toml", ".service")  # the suffixes of what a configuration directory runs


def one_line(text: str) -> str:
    """`text` with every character that is not printable escaped, as repr() would.

    An error quotes what a file holds (a command, a user name, a file name); a newline
    in one must not become a line of its own in `roost check`'s output or a log.
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _brief(error: ConfigError) -> str:
    where = os.path.basename(error.path) + (f":{error.line}" if error.line is not None else "")
    return one_line(f"{where}: {error.key}: {error.message}" if error.key
                    else f"{where}: {error.message}")


def degrade(config: Config, errors: list[ConfigError]) -> dict[str, str]:
    """Keep in `config` only the services no error reaches; return the rest, each with why.

    A service is broken by an error in its own file, or by requiring a broken service;
    a `wants` of one is dropped and the service starts without it. An error in no
    service's file (roost.toml, a misnamed file, the directory) is returned under the
    file's name.
    """
    reasons: dict[str, list[str]] = {}
    for error in errors:
        name = os.path.basename(error.path)
        if (os.path.dirname(error.path) == config.directory and name.endswith(SERVICE_FILES)
                and name != SETTINGS_FILE):
            name = name.rsplit(".", 1)[0]
        elif os.path.basename(os.path.dirname(error.path)).endswith(".service.d"):
            name = os.path.basename(os.path.dirname(error.path))[: -len(".service.d")]
        elif error.path == config.directory:
            name = error.path
        reasons.setdefault(name, []).append(_brief(error))
    services = config.services
    dependents: dict[str, list[str]] = {}
    for name, service in services.items():
        for dep in service.requires:
            dependents.setdefault(dep, []).append(name)
    # Breadth first over requirers: a chain of any length costs one visit per service.
    queue = [name for name in reasons if name in services or name in dependents]
    while queue:
        dep = queue.pop()
        services.pop(dep, None)
        for name in dependents.get(dep, ()):
            if name in services and name not in reasons:
                reasons[name] = [f"requires {dep}, which is broken"]
                queue.append(name)
    for service in services.values():
        service.wants = [w for w in service.wants if w in services]
    return {name: "; ".join(lines) for name, lines in reasons.items()}
