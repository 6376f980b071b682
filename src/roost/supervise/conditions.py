"""A start's conditions looked at, just before its command would run."""

from __future__ import annotations

from roost.core.conditions import unmet as evaluate
from roost.kernel.conditions import test

TYPE_CHECKING = False
if TYPE_CHECKING:
    from roost.core.actions import Action
    from roost.core.machine import Machine


def unmet(machine: Machine, now: float) -> list[Action] | None:
    """None if the start may go on; else the machine's move: skipped, or failed."""
    found = evaluate(machine.config.conditions, test)
    if found is None:
        return None
    group, what = found
    if group == "condition":
        return machine.skipped(f"skipped: {what}", now)
    return machine.spawn_failed(f"assertion failed: {what}", now)
