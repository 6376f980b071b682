"""What a configuration error is: the one part of config checking a running roost keeps.

The checking itself (load.py, check.py, tomllib) runs in the reader's child and in
`roost check`; the supervisor only receives its errors.
"""

from __future__ import annotations


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
