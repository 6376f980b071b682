"""Orphan storm: 10,000 orphans handed to PID 1, time until all are reaped.

Each container init is PID 1 of `unshare --pid --fork --mount-proc` and runs
bench-orphans (static C) as its main child.  Two shapes:
- burst: a middle process forks 10,000 children that exit at once, then exits,
  so 10,000 zombies reach PID 1 in one instant; "drain" is from that instant
  until PID 1 has no child left but the generator.
- stream: 10,000 double forks as fast as the generator can go, each leaving an
  orphan that exits at once; "total" is from the first fork to the last reap.
"Peak unreaped" is the most children PID 1 had at one sample (from
/proc/1/task/*/children, sampled by the generator itself between forks).
"""

from __future__ import annotations

import json

from bench import inits, native, procs
from bench.core import BENCH_DIR, Ctx, Result, Table, Target, fmt, interleave, real_python
from bench.procs import UNSHARE

NAME = "orphans"
TITLE = "Orphan storm"
ORDER = 50

N = 10_000
PY_FLOOR = "python floor"
HELPERS = BENCH_DIR / "helpers"


def storm(prefix: list[str], mode: str) -> dict[str, object]:
    """One storm under one init; bench-orphans' JSON report."""
    with procs.Owned() as owned:
        out = owned.run([*UNSHARE, *prefix, native.path("bench-orphans"), mode, str(N), "60"],
                        timeout=180)
    line = out.stdout.decode().strip().splitlines()
    if out.returncode != 0 or not line:
        raise RuntimeError(f"exit {out.returncode}: {out.stderr.decode().strip()[-300:]}")
    result: dict[str, object] = json.loads(line[-1])
    return result


def run(ctx: Ctx) -> Result:
    """Both storm shapes under every container init, interleaved."""
    res = Result(NAME, TITLE, __doc__ or "")
    ok, why = inits.available(ctx)
    for name, reason in why.items():
        res.notes.append(f"{name} not measured: {reason}")
    # A floor, not a peer: what any Python PID 1 pays per reaped child.
    ok[PY_FLOOR] = [real_python(), "-I", "-S", str(HELPERS / "py_reaper.py")]
    res.notes.append(f"{PY_FLOOR} is bench/helpers/py_reaper.py: a 20-line Python PID 1 "
                     "(sigwaitinfo, then waitid until empty). It is not an init anyone "
                     "should use; it shows how much of roost's time is the interpreter's.")
    reps = ctx.n(2, 5)
    t_burst = Table(f"burst: {N:,} zombies at once, time to reap all", "ms", scale=1e3)
    p_burst = Table("burst: peak unreaped children of PID 1", "count", digits=0)
    t_stream = Table(f"stream: {N:,} double forks, first fork to last reap", "ms", scale=1e3)
    p_stream = Table("stream: peak unreaped children of PID 1", "count", digits=0)
    tail = Table("stream: last fork to last reap", "ms", scale=1e3)
    raw: list[dict[str, object]] = []
    incomplete: list[str] = []
    for rep, name in interleave(list(ok), reps, warmup=1):
        for mode in ("burst", "stream"):
            try:
                r = storm(ok[name], mode)
            except (RuntimeError, TimeoutError) as exc:
                incomplete.append(f"{name} {mode}: {exc}")
                continue
            r["init"] = name
            raw.append(r)
            if not r["complete"]:
                incomplete.append(f"{name} {mode}: {r['left']} orphans still unreaped after 60 s")
                continue
            if rep < 0:
                continue
            if mode == "burst":
                t_burst.add(name, [float(r["drain_s"])])  # type: ignore[arg-type]
                p_burst.add(name, [float(r["peak_unreaped"])])  # type: ignore[arg-type]
            else:
                t_stream.add(name, [float(r["total_s"])])  # type: ignore[arg-type]
                p_stream.add(name, [float(r["peak_unreaped"])])  # type: ignore[arg-type]
                tail.add(name, [float(r["drain_s"])])  # type: ignore[arg-type]
    res.tables += [t_burst, p_burst, t_stream, p_stream, tail]
    res.notes += incomplete
    res.raw = {"runs": raw}
    for table, label in ((t_burst, "burst"), (t_stream, "stream")):
        ratio = table.ratio("tini")
        goal = f"orphan storm ({label}) reaped no slower than tini"
        if ratio is None:
            res.targets.append(Target(goal, None, "roost or tini not measured"))
        else:
            floor, tini, roost = table.row(PY_FLOOR), table.row("tini"), table.row("roost")
            why = "" if floor is None or tini is None or roost is None else (
                f"the {PY_FLOOR} (a Python PID 1 that does nothing but waitid until empty) "
                f"takes {fmt(floor.median / tini.median)}x tini's time and roost "
                f"{fmt(roost.median / floor.median)}x the floor's: what the interpreter costs "
                "per reaped child, against what roost adds.")
            res.targets.append(Target(goal, ratio <= 1.0, f"{fmt(ratio)}x tini", why))
            res.headlines.append(f"orphan storm ({label}): roost takes {fmt(ratio)}x tini's time")
    return res
