"""100 and 1000 services: time from start to all up, and time to stop all.

Each supervisor is PID 2 of its own PID namespace.  Start: from nsinit's instant
right before it forks the supervisor until the poller first sees every service
up, as the supervisor itself reports it (roost `status` in-process, supervisord
getAllProcessInfo over XML-RPC with startsecs=0, circus `status` through its own
client, runit supervise/stat, s6 supervise/status), polled every 10 ms.
Stop: from the stop request (roost: `roost shutdown` CLI, whose own start-up is
included; supervisord, circusd, s6-svscan: SIGTERM; runsvdir: SIGHUP) until no
process is left in the namespace.  --quick runs 100 services only.
"""

from __future__ import annotations

import time

from bench import supervisors
from bench.core import Ctx, Result, Table, Target, fmt, interleave, rmtree_quiet
from bench.procs import Owned

NAME = "mass"
TITLE = "Many services: start and stop"
ORDER = 60


def run(ctx: Ctx) -> Result:
    """Start and stop N services under each supervisor, interleaved."""
    res = Result(NAME, TITLE, __doc__ or "")
    classes, why = supervisors.available(ctx)
    for name, reason in why.items():
        res.notes.append(f"{name} not measured: {reason}")
    counts = [100] if ctx.quick else [100, 1000]
    reps = ctx.n(1, 3)
    stop_limit = 60.0
    up_tables: dict[int, Table] = {}
    for n in counts:
        up = Table(f"{n} services: start to all up", "s", digits=3)
        down = Table(f"{n} services: stop request to all gone", "s", digits=3)
        up_tables[n] = up
        stop_timed_out: set[str] = set()
        for rep, cls in interleave(classes, reps, warmup=0):
            del rep
            owned = Owned()
            sup = cls(ctx.peers, ctx.workdir(f"mass{n}-{cls.name}"))
            try:
                t0 = sup.start(owned, supervisors.idle_services(n))
                t_up = sup.wait_up(300)
                up.add(cls.name, [t_up - t0])
                if cls.name in stop_timed_out:
                    continue  # once is enough to know it does not stop in time
                time.sleep(0.5)
                try:
                    t_req, t_empty = sup.stop(stop_limit)
                except TimeoutError:
                    stop_timed_out.add(cls.name)
                    left = len(sup.ns.pids()) if sup.ns else -1
                    res.notes.append(f"{cls.name} at {n} services: not stopped {stop_limit:.0f} s "
                                     f"after the stop request ({left} processes left); "
                                     "its later repetitions measure the start only")
                    continue
                down.add(cls.name, [t_empty - t_req])
            except (TimeoutError, RuntimeError, OSError) as exc:
                res.notes.append(f"{cls.name} at {n} services: {exc}")
            finally:
                owned.close()
                rmtree_quiet(sup.dir)
        for name in stop_timed_out:
            down.add(name, [], note=f"did not finish within {stop_limit:.0f} s")
        if "roost" in stop_timed_out:
            res.headlines.append(f"{n} services: roost had not stopped them {stop_limit:.0f} s "
                                 "after the shutdown request")
        res.tables += [up, down]
        for t, what in ((up, "up"), (down, "stopped")):
            r = t.ratio("supervisord")
            if r is not None:
                res.headlines.append(f"{n} services {what}: roost takes {fmt(r)}x "
                                     "supervisord's time")
    t1000 = up_tables.get(1000)
    goal = "1000 services up <= 0.33x supervisord's time"
    ratio = t1000.ratio("supervisord") if t1000 else None
    if ratio is None:
        res.targets.append(Target(goal, None, "not measured (--quick runs 100 only)"
                                  if ctx.quick else "roost or supervisord not measured"))
    else:
        res.targets.append(Target(goal, ratio <= 0.33, f"{fmt(ratio)}x"))
    return res
