"""Templates: `NAME@.toml` and `NAME@.service`, run as `NAME@INSTANCE` services.

A template is no service of its own. Its instances are those its `instances` key lists,
those a `requires` or `wants` of another service names, and those a file of the
instance's name gives (`web@a.toml`, often a symlink to `web@.toml`, as systemd's wants
directories hold them). In an instance of a `.toml` template, every string value has its
`%` specifiers expanded as systemd.unit(5) expands them (`%i` the instance, `%I` it
unescaped, `%n`, `%N`, `%p`, `%P`, `%t`, `%S`, `%C`, `%L`, `%E`, `%h`, `%u`, `%U`, `%%`),
by the one implementation the unit reader uses.
"""

from __future__ import annotations

from roost.config.check import shown

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

MAX_INSTANCES = 1024


def template_of(name: str, templates: dict[str, str]) -> str | None:
    """The template file an instance `NAME@INSTANCE` is made from, or None."""
    prefix, at, instance = name.partition("@")
    return templates.get(prefix + "@") if at and instance else None


def instances(value: Any) -> list[str]:
    """A template's `instances`: a list of instance names (what comes after the @)."""
    import re  # noqa: PLC0415 - lazy (start-up): templates only

    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError("expected a list of instance names like [\"a\", \"b\"]")
    if len(value) > MAX_INSTANCES:
        raise ValueError(f"at most {MAX_INSTANCES} instances, got {len(value)}")
    for item in value:
        if not re.fullmatch(r"[A-Za-z0-9_.@-]+", item):
            raise ValueError(f"not an instance name: {shown(item)}")
    return list(value)


def expanded(data: dict[str, Any], name: str) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """A template's values for instance `name`, specifiers expanded; and (key, why) refused."""
    from roost.importers.unitfile import Refused, expand, specifiers_of  # noqa: PLC0415 - lazy (memory): templates only

    specifiers = specifiers_of(name)
    refused: list[tuple[str, str]] = []

    def walk(value: Any, key: str) -> Any:
        if isinstance(value, str):
            try:
                return expand(value, specifiers, key)
            except Refused as exc:
                refused.append((key, exc.reason))
                return value
        if isinstance(value, list):
            return [walk(v, key) for v in value]
        if isinstance(value, dict):
            return {k: walk(v, key) for k, v in value.items()}
        return value

    return {key: walk(value, key) for key, value in data.items()}, refused

