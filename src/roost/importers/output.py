"""What an importer writes: roost service files, each saying where it came from."""

from __future__ import annotations

import json
import os
import re

from roost.core.model import SERVICE_NAME


class Service:
    """One roost service file, made from one supervisord process or one systemd unit."""

    def __init__(self, name: str, source: str, tool: str):
        self.name = name
        self.source = source
        self.tool = tool
        self.lines: list[str] = []
        self.warnings: list[str] = []
        # Where each key came from ("file:line", the source's directive), for errors.
        self.origins: dict[str, tuple[str, str]] = {}
        if not re.fullmatch(SERVICE_NAME, name):
            self.name = re.sub(r"[^A-Za-z0-9_.@-]", "-", name).lstrip("_.@-") or "service"
            self.warnings.append(f"name {name!r} is not a roost service name: {self.name!r}")

    def set(self, key: str, value: object, note: str = "",
            at: tuple[str, str] | None = None) -> None:
        """Add `key = value`, with a comment when the mapping is approximate.

        `at` is where the value came from ("file:line" and the directive there).
        """
        if at is not None:
            self.origins[key] = at
        line = f"{key} = {_toml(value)}"
        self.lines.append(f"{line}  # {note}" if note else line)

    def text(self) -> str:
        """The service file: where it came from, then its keys."""
        head = [f"# Imported from {self.source} by `roost import {self.tool}`."]
        head += [f"# ignored: {w}" for w in self.warnings]
        return "\n".join([*head, *self.lines]) + "\n"


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + " }"
    return json.dumps(str(value))




def write(services: list[Service], out: str | None) -> int:
    """Print the services, or write one NAME.toml each into `out` (never over a file)."""
    for service in services:
        for warning in service.warnings:
            os.write(2, f"roost import: {service.name}: ignored: {warning}\n".encode())
        if out is None:
            os.write(1, f"# ---- {service.name}.toml\n{service.text()}".encode())
            continue
        target = os.path.join(out, f"{service.name}.toml")
        try:
            os.makedirs(out, exist_ok=True)
            with open(target, "x", encoding="utf-8") as f:
                f.write(service.text())
        except FileExistsError:
            os.write(2, f"roost import: {target} exists; nothing overwritten\n".encode())
            return 1
        except OSError as exc:
            os.write(2, f"roost import: {target}: {exc.strerror}\n".encode())
            return 1
    return 0


def arguments(argv: list[str], usage: str) -> tuple[list[str], str | None] | None:
    """FILE... and `-o DIR` from `argv`; None (usage printed) when they make no sense."""
    args, out = list(argv), None
    if "-o" in args:
        i = args.index("-o")
        if i + 1 >= len(args):
            args = []
        else:
            out = args[i + 1]
            del args[i:i + 2]
    if not args or any(a.startswith("-") for a in args):
        os.write(2, f"{usage}\n".encode())
        return None
    return args, out
