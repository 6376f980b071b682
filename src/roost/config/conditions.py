"""The condition_* and assert_* keys: lists of `[|][!]/absolute/path`."""

from __future__ import annotations

from roost.config.check import shown
from roost.core.conditions import parse

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

MAX_CONDITIONS = 64  # per key: enough for any unit seen, bounded for the checker's sake
MAX_PATH = 4096  # PATH_MAX


def paths(value: Any) -> list[str]:
    """A condition key's value: a path, or a list of them, each `[|][!]/absolute/path`."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
        raise ValueError("expected a path or a list of paths like \"/etc/x\", \"!/run/y\"")
    if len(items) > MAX_CONDITIONS:
        raise ValueError(f"at most {MAX_CONDITIONS} paths, got {len(items)}")
    for item in items:
        path = parse(item)[2]
        if len(item) > MAX_PATH or not path.startswith("/"):
            raise ValueError(f"expected an absolute path (after | and !), got {shown(item)}")
    return list(items)
