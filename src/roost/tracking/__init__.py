"""Which processes belong to which service, by the most precise means this system allows.

In order of precision (see docs/tracking.md):

  cgroup          a cgroup v2 per service; each child joins it before it execs.
                  Exact; setsid and double forks cannot leave it; emptiness is an
                  event (cgroup.events), and cgroup.kill stops a fork bomb at once.
  proc-connector  the kernel's fork and exit events, read as they are queued:
                  a pid -> service map that follows every fork. Exact, where the
                  kernel delivers events with our PIDs (not in a PID namespace).
  lineage         the process tree, sessions and process groups as /proc shows
                  them, scanned when it matters. The floor.

Every signal to a member goes through a pidfd opened and then verified to still
be that member, so a recycled PID is never signalled.
"""

from __future__ import annotations

from roost.tracking.lineage import LINEAGE_PINS, LINEAGE_POLL
from roost.tracking.means import CGROUP, CONNECTOR, LINEAGE, MEANS
from roost.tracking.tracker import REKILL_INTERVAL, ROUNDS, Tracker

__all__ = ["CGROUP", "CONNECTOR", "LINEAGE", "LINEAGE_PINS", "LINEAGE_POLL", "MEANS",
           "REKILL_INTERVAL", "ROUNDS", "Tracker"]
