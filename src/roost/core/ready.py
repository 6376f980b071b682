"""What counts as ready: each wanted service up (or done) and not unhealthy.

One rule for `roost status --check`, the exit status of `roost status` and roost's
own ready file, read from the services' status records (runtime.Runtime.record).
A record that says nothing of health counts as healthy; one whose `health` field
is "unhealthy" does not.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

    Record = dict[str, Any]

READY_STATES = ("up", "done")
UNHEALTHY = "unhealthy"
# The order the summary counts states in: what is fine first, then what is on its way.
SUMMARY_ORDER = ("up", "done", "starting", "stopping", "backoff", "failed", "down")


def wanted(records: Iterable[Record]) -> list[Record]:
    """The records readiness is judged on: every service but those nobody wants.

    A service the configuration could not set up (`want` None) counts: it should run.
    """
    return [r for r in records if r.get("want") is not False]


def why_not(record: Record) -> str | None:
    """None if the service is ready, else a few words: its state, or that it is unhealthy."""
    state = record.get("state")
    if state not in READY_STATES:
        return str(state)
    if record.get("health") == UNHEALTHY:
        return UNHEALTHY
    return None


def not_ready(records: Iterable[Record]) -> list[tuple[str, str]]:
    """(name, why) for each wanted service that is not ready; empty when all of them are."""
    found = []
    for record in wanted(records):
        why = why_not(record)
        if why is not None:
            found.append((str(record.get("name")), why))
    return found


def summary(records: Iterable[Record]) -> str:
    """How many services are in each state, as `12 up, 1 failed`."""
    counts: dict[str, int] = {}
    for record in records:
        state = str(record.get("state"))
        counts[state] = counts.get(state, 0) + 1
    order = [s for s in SUMMARY_ORDER if s in counts] + sorted(set(counts) - set(SUMMARY_ORDER))
    return ", ".join(f"{counts[s]} {s}" for s in order) or "no services"
