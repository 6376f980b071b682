"""Crash-to-restart latency with restart delay 0.

One service, bench-crashy (static C): on start it appends "start_ns exit_ns" to a
log with one write and _exits 1, exit_ns taken right before _exit (CLOCK_MONOTONIC).
Latency = next start minus previous exit: the supervisor's reaping, decision and
fork/exec of the next life.  Every supervisor is set to restart at once
(roost restart_delay = 0 and restart_limit = 1000000, see the notes; supervisord
startsecs=0, autorestart; circus respawn, warmup_delay 0).  runit's runsv and
s6-supervise have a built-in minimum: they do not restart a service more than
once a second, so they get a few restarts only and their figures show that
floor, not their reaction time.
"""

from __future__ import annotations

import time
from pathlib import Path

from bench import native, supervisors
from bench.core import Ctx, Grid, Result, Table, Target, fmt, percentile, rmtree_quiet
from bench.procs import Owned

NAME = "restart"
TITLE = "Crash-to-restart latency"
ORDER = 70

THROTTLED = {"runit": "runsv waits 1 s before restarting a service that ran < 1 s",
             "s6": "s6-supervise waits 1 s between two starts of a service"}
# Not a deliberate minimum, but a polling period that bounds the latency from below.
POLLING = {"supervisord": "notices a child's exit on its 1 s poll tick (Python retries the "
                          "interrupted poll, so SIGCHLD does not wake it)",
           "circus": "restarts on its periodic check, check_delay (5 s by default); a lower "
                     "check_delay costs idle wake-ups"}


def latencies(log: Path) -> list[float]:
    """Next start minus previous exit, in seconds, from a crashy log."""
    lines = []
    for line in log.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2:
            lines.append((int(parts[0]), int(parts[1])))
    return [(lines[i + 1][0] - lines[i][1]) / 1e9 for i in range(len(lines) - 1)]


def lives(log: Path) -> int:
    """How many lives the crashy service has logged."""
    try:
        return log.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def run(ctx: Ctx) -> Result:
    """Let the crashy service die and come back K times under each supervisor."""
    res = Result(NAME, TITLE, __doc__ or "")
    classes, why = supervisors.available(ctx)
    for name, reason in why.items():
        res.notes.append(f"{name} not measured: {reason}")
    fast = ctx.n(100, 500)
    slow = ctx.n(3, 5) if ctx.reps is None else min(ctx.reps, 5)
    table = Table("Crash to restart (next start minus previous exit)", "ms", scale=1e3)
    grid = Grid("Percentiles (ms)", ["supervisor", "restarts", "p50", "p90", "p99", "max", "note"])
    # roost gives up on a service after restart_limit starts (default 10) within
    # restart_window (default 60 s); lift it so that p99 rests on enough restarts.
    svc = supervisors.Service("crashy", native.path("bench-crashy"), data=True,
                              roost_extra={"restart_limit": 1_000_000})
    res.notes.append("roost is configured with restart_limit = 1000000: by default it marks a "
                     "service failed after 10 starts within 60 s, so restart = \"always\" "
                     "stops after 10 crashes.")
    limit = 8.0 if ctx.quick else 60.0
    for cls in classes:
        want = (slow if cls.name in THROTTLED else fast) + 1
        owned = Owned()
        sup = cls(ctx.peers, ctx.workdir(f"restart-{cls.name}"))
        lats: list[float] = []
        try:
            sup.start(owned, [svc])
            log = Path(sup.data_file(svc))
            deadline = time.monotonic() + (want * 1.5 + 10 if cls.name in THROTTLED else limit)
            while lives(log) < want and time.monotonic() < deadline:
                time.sleep(0.05)
            got = lives(log)
            if got < want:
                res.notes.append(f"{cls.name}: {got} lives in {limit:.0f} s (wanted {want})")
            sup.stop(60)
            lats = latencies(log)[: want - 1] if log.exists() else []
        except (TimeoutError, RuntimeError, OSError) as exc:
            res.notes.append(f"{cls.name}: {exc}")
        finally:
            owned.close()
            rmtree_quiet(sup.dir)
        if not lats:
            continue
        note = THROTTLED.get(cls.name) or POLLING.get(cls.name, "")
        table.add(cls.name, lats, note=note)
        grid.cells.append([cls.name, str(len(lats)), *(fmt(percentile(lats, q) * 1e3)
                                                         for q in (50, 90, 99)),
                           fmt(max(lats) * 1e3), note])
        res.raw[cls.name] = lats
    res.tables += [grid, table]
    res.raw["plots"] = [{
        "kind": "cdf", "file": "restart-cdf.svg", "xlabel": "crash to restart (ms)",
        "xlog": True,
        "series": {r.subject: [x * 1e3 for x in r.samples] for r in table.rows},
    }]
    res.plots.append("restart-cdf.svg")
    row = table.row("roost")
    goal = "crash-to-restart p50 < 5 ms"
    if row is None:
        res.targets.append(Target(goal, None, "roost not measured"))
    else:
        p50, p99 = percentile(row.samples, 50), percentile(row.samples, 99)
        res.targets.append(Target(goal, p50 < 0.005, f"p50 {fmt(p50 * 1e3)} ms, "
                                                       f"p99 {fmt(p99 * 1e3)} ms"))
        res.headlines.append(f"crash to restart: roost p50 {fmt(p50 * 1e3)} ms"
                             + "".join(f", {k} {fmt(percentile(table.row(k).samples, 50) * 1e3)} ms"  # type: ignore[union-attr]
                                       for k in ("supervisord", "circus") if table.row(k)))
    return res
