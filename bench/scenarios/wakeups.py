"""Idle wake-ups per second: context switches of the supervisor's own processes.

Every supervisor runs 10 idle services, and every container init one idle child,
all at the same time (idle processes do not disturb each other), settled 2 s after
everything is up.  The increase of voluntary + involuntary context switches, over
all threads of the counted processes (see the memory scenario for which ones),
is read from /proc/PID/task/TID/status over a 30 s window (10 s with --quick),
split into three (two) equal parts: each part is one sample.
"""

from __future__ import annotations

import contextlib
import os
import time

from bench import inits, native, procs, supervisors
from bench.core import Ctx, Result, Table, Target, fmt
from bench.procs import UNSHARE

NAME = "wakeups"
TITLE = "Idle wake-ups"
ORDER = 40


def run(ctx: Ctx) -> Result:
    """Start everything, then count context switches over the window."""
    res = Result(NAME, TITLE, __doc__ or "")
    window = 10.0 if ctx.quick else 30.0
    parts = 2 if ctx.quick else 3
    classes, swhy = supervisors.available(ctx)
    ok, iwhy = inits.available(ctx)
    for name, reason in {**swhy, **iwhy}.items():
        res.notes.append(f"{name} not measured: {reason}")
    idle = os.path.realpath(native.path("bench-idle"))
    subjects: dict[str, list[int]] = {}
    sups: dict[str, supervisors.Supervisor] = {}
    with contextlib.ExitStack() as stack:
        for cls in classes:
            try:
                sup, _, _ = stack.enter_context(
                    supervisors.run_one(cls, ctx, supervisors.idle_services(10), "wake"))
            except (TimeoutError, RuntimeError, OSError) as exc:
                res.notes.append(f"{cls.name}: {exc}")
                continue
            sups[f"{cls.name} (10 services)"] = sup
        owned = stack.enter_context(procs.Owned())
        for name, prefix in ok.items():
            p = owned.popen([*UNSHARE, *prefix, native.path("bench-idle")])
            init_pid = procs.wait_children(p.pid, 1, 10)[0]
            deadline = time.monotonic() + 20
            while not any(os.path.realpath(procs.exe(q)) == idle
                          for q in procs.descendants(init_pid)):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{name}: idle child never started")
                time.sleep(0.005)
            own = [q for q in [init_pid, *procs.descendants(init_pid)]
                   if os.path.realpath(procs.exe(q)) != idle]
            subjects[f"{name} (1 child)"] = own
        time.sleep(2.0)
        # Only now: right after "up", a service may still be a forked, not yet exec'd copy.
        for key, sup in sups.items():
            subjects[key] = sup.own_pids()
        counts = {k: [procs.ctx_switches(v)] for k, v in subjects.items()}
        stamps = [time.monotonic()]
        for _ in range(parts):
            time.sleep(window / parts)
            stamps.append(time.monotonic())
            for k, v in subjects.items():
                counts[k].append(procs.ctx_switches(v))
    table = Table(f"Context switches per second while idle ({window:.0f} s)", "1/s",
                  roost="roost (10 services)", digits=2)
    totals: dict[str, int] = {}
    for k, cs in counts.items():
        rates = [(cs[i + 1] - cs[i]) / (stamps[i + 1] - stamps[i]) for i in range(parts)]
        table.add(k, rates, note=f"processes counted: {len(subjects[k])}")
        totals[k] = cs[-1] - cs[0]
    res.tables.append(table)
    res.raw = {"counts": counts, "stamps": stamps, "pids": subjects}
    res.notes.append("Total switches over the window: "
                     + ", ".join(f"{k} {v}" for k, v in totals.items()))
    for key in ("roost (10 services)", "roost (1 child)"):
        if key in totals:
            rate = totals[key] / (stamps[-1] - stamps[0])
            res.targets.append(Target(f"0 idle wake-ups per second: {key}", totals[key] == 0,
                                      f"{fmt(rate, 3)}/s ({totals[key]} in {window:.0f} s)"))
            res.headlines.append(f"idle: {key} {fmt(rate, 3)} wake-ups/s")
    if not any(t.goal.startswith("0 idle") for t in res.targets):
        res.targets.append(Target("0 idle wake-ups per second", None, "roost not measured"))
    return res
