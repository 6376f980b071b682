"""Exec until signal handlers are live: how long after exec a SIGTERM can be lost.

Each container init runs as PID 1 of a fresh PID namespace (bench-sigwin) with a
child that would exit 0 by itself after 0.4 s.  SIGTERM is sent at increasing
delays after the init's execve (the instant a close-on-exec pipe reaches EOF).
Acted on: the init ends with 143 (or by SIGTERM) well before the child's natural
end.  Lost: PID 1 discarded the signal (no handler yet, signal not blocked) and
the init ended 0 with its child.  The figure is the smallest delay from which on
every trial at every larger delay was acted on.
"""

from __future__ import annotations

import json
import subprocess

from bench import inits, native
from bench.core import Ctx, Grid, Result, Table, Target, fmt

NAME = "signal-window"
TITLE = "Exec until signal handlers are live"
ORDER = 20

DELAYS_FULL = [0, 0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 40, 50, 75, 100, 150]
DELAYS_QUICK = [0, 0.5, 1, 2, 5, 10, 20, 30, 50, 100]
CHILD_LIFE_S = "0.4"


def trial(prefix: list[str], delay_ms: float) -> dict[str, object]:
    """One TERM at delay_ms after the init's exec; bench-sigwin's verdict."""
    argv = [native.path("bench-sigwin"), str(delay_ms * 1000), "3000", "--", *prefix,
            native.path("bench-idle"), CHILD_LIFE_S]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        raise RuntimeError(f"bench-sigwin failed: {proc.stderr.strip()}")
    out: dict[str, object] = json.loads(proc.stdout)
    code = out["code"]
    if (out["outcome"] == "exit" and code == 143) or (out["outcome"] == "signal" and code == 15):
        out["verdict"] = "acted"
    elif out["outcome"] == "exit" and code == 0:
        out["verdict"] = "lost"
    else:
        out["verdict"] = f"other ({out['outcome']} {code})"
    return out


def safe_delay(delays: list[float], acted: dict[float, tuple[int, int]]) -> float | None:
    """Smallest delay from which every trial at it and every larger delay was acted on."""
    safe: float | None = None
    for d in reversed(delays):
        ok, total = acted[d]
        if ok != total:
            break
        safe = d
    return safe


def run(ctx: Ctx) -> Result:
    """Sweep the delays for every container init, trials interleaved."""
    res = Result(NAME, TITLE, __doc__ or "")
    ok, why = inits.available(ctx)
    ok.update(inits.launches(ctx))
    for name, reason in why.items():
        res.notes.append(f"{name} not measured: {reason}")
    delays = DELAYS_QUICK if ctx.quick else DELAYS_FULL
    trials = ctx.n(3, 10)
    names = list(ok)
    counts = {n: {d: [0, 0] for d in delays} for n in names}
    response: dict[str, list[float]] = {n: [] for n in names}
    others: list[str] = []
    raw: list[dict[str, object]] = []
    for _ in range(trials):
        for d in delays:
            for n in names:
                out = trial(ok[n], d)
                out["init"] = n
                raw.append(out)
                counts[n][d][1] += 1
                if out["verdict"] == "acted":
                    counts[n][d][0] += 1
                    response[n].append(float(out["after_ms"]) / 1e3)  # type: ignore[arg-type]
                elif out["verdict"] != "lost":
                    others.append(f"{n} at {d} ms: {out['verdict']}")
    grid = Grid("TERM acted on / sent, by delay after exec (ms)", ["delay (ms)", *names])
    for d in delays:
        grid.cells.append([fmt(d, 2), *(f"{counts[n][d][0]}/{counts[n][d][1]}" for n in names)])
    summary = Grid("Smallest delay after exec from which TERM is always acted on",
                   ["init", "safe from (ms)", "lost TERMs", "trials"])
    safe_by: dict[str, float | None] = {}
    for n in names:
        acted = {d: (counts[n][d][0], counts[n][d][1]) for d in delays}
        s = safe_delay(delays, acted)
        safe_by[n] = s
        lost = sum(t - a for a, t in acted.values())
        summary.cells.append([n, "never (lost at every delay)" if s is None else fmt(s, 2),
                              str(lost), str(sum(t for _, t in acted.values()))])
    resp = Table("Time from TERM to the init's exit, when acted on", "ms", scale=1e3,
                 note="Includes forwarding to the child, its death, and the init's exit.")
    for n in names:
        resp.add(n, response[n])
    res.tables += [summary, grid, resp]
    res.notes += others[:20]
    res.raw = {"trials": raw, "delays": delays}
    res.raw["plots"] = [{
        "kind": "lines", "file": "signal-window.svg", "xlabel": "delay after exec (ms)",
        "ylabel": "fraction of TERMs lost", "xlog": "symlog",
        "series": {n: [[d, 1 - counts[n][d][0] / max(1, counts[n][d][1])] for d in delays]
                   for n in names},
    }]
    res.plots.append("signal-window.svg")
    tini = safe_by.get("tini")
    for n, v in safe_by.items():
        if n.startswith("roost") and n != "roost (base)" and tini is not None:
            res.targets.append(Target(f"signal window: {n} acts on every TERM from no later "
                                      "than tini", v is not None and v <= tini,
                                      "never" if v is None else f"{fmt(v, 2)} ms (tini "
                                      f"{fmt(tini, 2)} ms)"))
    if "roost" in safe_by:
        s = safe_by["roost"]
        res.headlines.append(
            "signal window: roost acts on every TERM sent "
            + ("at no tested delay" if s is None else f"from {fmt(s, 2)} ms after exec")
            + "; " + ", ".join(f"{n} from {fmt(v, 2)} ms" for n, v in safe_by.items()
                               if n != "roost" and v is not None))
    return res
