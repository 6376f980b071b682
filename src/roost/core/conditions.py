"""Conditions and assertions of a start, as systemd.unit(5) evaluates them; pure.

Each is `KIND` and a value `[|][!]PATH`: `!` negates the test, `|` makes it a
triggering one. A group (the conditions, then the assertions) holds when every
plain one holds and, if any is triggering, at least one triggering one does. The
file tests themselves are the caller's (kernel/conditions.py): `test(kind, path)`.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

KINDS = ("path_exists", "path_is_directory", "file_not_empty", "path_exists_glob",
         "file_is_executable")
KEYS = tuple(f"{group}_{kind}" for group in ("condition", "assert") for kind in KINDS)


def parse(spec: str) -> tuple[bool, bool, str]:
    """`[|][!]PATH` as (triggering, negated, path)."""
    trigger = spec.startswith("|")
    spec = spec[1:] if trigger else spec
    negate = spec.startswith("!")
    return trigger, negate, spec[1:] if negate else spec


def unmet(conditions: list[list[str]], test: Callable[[str, str], bool]) -> tuple[str, str] | None:
    """None if the start may go on; else ("condition" or "assert", what is not met).

    `conditions` holds [key, spec] pairs, key one of KEYS. The conditions are looked at
    first: a start they skip asserts nothing.
    """
    for group in ("condition", "assert"):
        plain, triggers, held = [], [], False
        for key, spec in conditions:
            if not key.startswith(group + "_"):
                continue
            trigger, negate, path = parse(spec)
            ok = test(key[len(group) + 1:], path) != negate
            if trigger:
                triggers.append(f"{key}={spec}")
                held = held or ok
            elif not ok:
                plain.append(f"{key}={spec}")
        if plain:
            return group, f"{plain[0]} is not met"
        if triggers and not held:
            return group, f"none of {', '.join(triggers)} is met"
    return None
