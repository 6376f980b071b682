"""Memory: RSS and PSS of the init or supervisor itself, from /proc/PID/smaps_rollup.

Container inits: each is PID 1 of a fresh PID namespace with one idle child; the
init's own processes are counted (every process of the namespace but the child).
A bare `python3 -I -S` sleeping is the reference for a Python init.
Supervisors: 1, 10, 100, 1000 idle services (a static C program that pause()s),
each supervisor as PID 2 of its own namespace; summed over the supervisor's own
processes, never the services': roost = every roost process; supervisord =
supervisord; circus = circusd (no circusd-stats); runit = runsvdir + one runsv per
service; s6 = s6-svscan + one s6-supervise per service.  RSS counts shared pages
once per process (so it overstates runit and s6 with many small processes); PSS
divides them among their users.  Measured 1 s after every service is up.
"""

from __future__ import annotations

import os
import time

from bench import inits, native, procs, supervisors
from bench.core import Ctx, Result, Table, Target, fmt, interleave, real_python
from bench.procs import UNSHARE

NAME = "memory"
TITLE = "RSS and PSS"
ORDER = 30

MB = 1e-6


def init_memory(prefix: list[str], settle: float) -> tuple[int, int, int]:
    """(rss, pss, process count) of an init running one idle child as a namespace's PID 1."""
    idle = os.path.realpath(native.path("bench-idle"))
    with procs.Owned() as owned:
        p = owned.popen([*UNSHARE, *prefix, native.path("bench-idle")])
        init_pid = procs.wait_children(p.pid, 1, 10)[0]
        deadline = time.monotonic() + 20
        while True:
            pids = [init_pid, *procs.descendants(init_pid)]
            if any(os.path.realpath(procs.exe(q)) == idle for q in pids):
                break
            if time.monotonic() > deadline:
                raise TimeoutError("the idle child never started")
            time.sleep(0.005)
        time.sleep(settle)
        pids = [init_pid, *procs.descendants(init_pid)]
        own = [q for q in pids if os.path.realpath(procs.exe(q)) != idle]
        rss, pss = procs.rss_pss(own)
        return rss, pss, len(own)


def bare_python_memory(settle: float) -> tuple[int, int, int]:
    """(rss, pss, 1) of an idle `python3 -I -S`."""
    with procs.Owned() as owned:
        p = owned.popen([real_python(), "-I", "-S", "-c", "import time; time.sleep(600)"])
        time.sleep(settle + 0.1)
        rss, pss = procs.rss_pss([p.pid])
        return rss, pss, 1


def run(ctx: Ctx) -> Result:
    """Inits with one child, then supervisors at each service count."""
    res = Result(NAME, TITLE, __doc__ or "")
    plots: list[dict[str, object]] = []
    # --- container inits
    ok, why = inits.available(ctx)
    for name, reason in why.items():
        res.notes.append(f"{name} (container init) not measured: {reason}")
    reps = ctx.n(2, 5)
    rss_t = Table("Container init with one idle child: RSS", "MB", scale=MB,
                  baselines=("python3 -I -S (idle)",))
    pss_t = Table("Container init with one idle child: PSS", "MB", scale=MB,
                  baselines=("python3 -I -S (idle)",))
    nproc: dict[str, int] = {}
    for rep, name in interleave([*ok, "python3 -I -S (idle)"], reps, warmup=0):
        del rep
        if name == "python3 -I -S (idle)":
            rss, pss, n = bare_python_memory(0.5)
        else:
            rss, pss, n = init_memory(ok[name], 0.5)
        rss_t.add(name, [rss])
        pss_t.add(name, [pss])
        nproc[name] = n
    res.tables += [rss_t, pss_t]
    res.notes.append("Processes counted per init: "
                     + ", ".join(f"{k} {v}" for k, v in nproc.items()))
    r = rss_t.row("roost")
    if r is not None:
        res.targets.append(Target("RSS with one idle child <= 10 MB", r.median <= 10e6,
                                  f"{fmt(r.median * MB)} MB"))
        res.headlines.append(f"memory: roost run with one child {fmt(r.median * MB)} MB RSS"
                             + "".join(f", {k} {fmt(rss_t.row(k).median * MB)} MB"  # type: ignore[union-attr]
                                       for k in ("tini",) if rss_t.row(k)))
    else:
        res.targets.append(Target("RSS with one idle child <= 10 MB", None, "roost not measured"))

    # --- supervisors
    classes, swhy = supervisors.available(ctx)
    for name, reason in swhy.items():
        res.notes.append(f"{name} (supervisor) not measured: {reason}")
    counts = [1, 10, 100] if ctx.quick else [1, 10, 100, 1000]
    sreps = ctx.n(1, 3)
    series_rss: dict[str, list[list[float]]] = {c.name: [] for c in classes}
    series_pss: dict[str, list[list[float]]] = {c.name: [] for c in classes}
    by_n: dict[int, tuple[Table, Table]] = {}
    failures: list[str] = []
    for n in counts:
        rt = Table(f"{n} idle service{'s' if n > 1 else ''}: RSS of the supervisor", "MB", scale=MB)
        pt = Table(f"{n} idle service{'s' if n > 1 else ''}: PSS of the supervisor", "MB", scale=MB)
        by_n[n] = (rt, pt)
        for rep, cls in interleave(classes, sreps, warmup=0):
            del rep
            try:
                with supervisors.run_one(cls, ctx, supervisors.idle_services(n), f"mem{n}") as (
                    sup, _t0, _tup
                ):
                    time.sleep(1.0)
                    rss, pss = procs.rss_pss(sup.own_pids())
            except (TimeoutError, RuntimeError, OSError) as exc:
                failures.append(f"{cls.name} at {n} services: {exc}")
                continue
            rt.add(cls.name, [rss])
            pt.add(cls.name, [pss])
        for cls in classes:
            if rt.row(cls.name):
                series_rss[cls.name].append([n, rt.row(cls.name).median * MB])  # type: ignore[union-attr]
                series_pss[cls.name].append([n, pt.row(cls.name).median * MB])  # type: ignore[union-attr]
        res.tables += [rt, pt]
    res.notes += failures
    res.notes.append("Counted as the supervisor's own: "
                     + "; ".join(f"{c.name}: {c.counts}" for c in supervisors.ALL))
    plots.append({"kind": "lines", "file": "memory-rss.svg", "xlabel": "idle services",
                  "ylabel": "RSS of the supervisor (MB)", "xlog": True, "ylog": True,
                  "series": series_rss})
    plots.append({"kind": "lines", "file": "memory-pss.svg", "xlabel": "idle services",
                  "ylabel": "PSS of the supervisor (MB)", "xlog": True, "ylog": True,
                  "series": series_pss})
    res.plots += ["memory-rss.svg", "memory-pss.svg"]
    res.raw["plots"] = plots
    rt100 = by_n.get(100, (None, None))[0]
    for peer in ("supervisord", "circus"):
        goal = f"RSS at 100 services <= 0.5x {peer}"
        ratio = rt100.ratio(peer) if rt100 else None
        if ratio is None:
            res.targets.append(Target(goal, None, "roost or peer not measured"))
        else:
            res.targets.append(Target(goal, ratio <= 0.5, f"{fmt(ratio)}x"))
            res.headlines.append(f"memory: roost at 100 services is {fmt(ratio)}x {peer}'s RSS")
    return res
