"""`podman stop` at once after `podman run -d`: how often the init loses the TERM.

A CI script, or an orchestrator deleting a pod it has just created, stops a container
while its init may still be starting. Each trial runs `podman run -d` of INIT sleep 60
(runc, no network, the host's root through an overlay: tests/container/podman.py),
then `podman stop -t 3` the moment the run returns. Exit 143: the init took the TERM
and ended its child. Exit 137: the TERM was lost, and podman killed the container when
the 3 s grace ran out. All trials run under CPU load, one busy loop per core (a busy
node), which stretches every start. "roost (interpreter directly)" is roost started
without its launcher, as a generated console script would start it.
"""

from __future__ import annotations

import os
import signal
import subprocess

from bench import inits
from bench.core import REPO, Ctx, Grid, Result, Skip, Target, interleave, real_python
from bench.installs import VENV_BIN, interpreter

NAME = "podman-stop"
TITLE = "podman stop right after podman run -d"
ORDER = 25
GRACE_S = "3"


def _busy_loops() -> list[subprocess.Popen[bytes]]:
    return [subprocess.Popen([real_python(), "-c", "while True: pass"], start_new_session=True)
            for _ in range(os.cpu_count() or 1)]


def run(ctx: Ctx) -> Result:
    """Interleaved trials of run -d then stop, per init, under load."""
    res = Result(NAME, TITLE, __doc__ or "")
    try:
        from tests.container.podman import Podman, Unavailable, unique_name
    except ImportError as exc:
        raise Skip(f"the tests' podman set-up cannot be imported from {REPO}: {exc}") from None
    ok, why = inits.available(ctx)
    for name, reason in why.items():
        res.notes.append(f"{name} not measured: {reason}")
    subjects = {n: p for n, p in ok.items() if n in ("roost", "tini", "roost (base)")}
    if "roost" in subjects:
        subjects["roost (interpreter directly)"] = [
            interpreter(VENV_BIN), "-I", "-S", str(VENV_BIN / "roost-python"), "run", "--"]
    try:
        podman = Podman()
    except Unavailable as exc:
        raise Skip(f"podman cannot run here: {exc}") from None
    trials = ctx.n(20, 200)
    counts = {n: {"acted": 0, "lost": 0, "other": 0} for n in subjects}
    others: list[str] = []
    load = _busy_loops()
    try:
        for rep, n in interleave(list(subjects), trials, warmup=1):
            name = unique_name()
            try:
                podman(*podman.run_args(name, "-d"), *subjects[n], "sleep", "60", check=True)
                podman("stop", "-t", GRACE_S, name, check=True)
                code = podman.exit_code(name)
            finally:
                podman.remove(name)
            if rep < 0:
                continue
            verdict = "acted" if code == 143 else "lost" if code == 137 else "other"
            counts[n][verdict] += 1
            if verdict == "other":
                others.append(f"{n}: exit {code}")
    finally:
        for proc in load:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        podman.close()
    grid = Grid(f"TERMs lost by `podman stop -t {GRACE_S}` right after `podman run -d`, "
                f"under load ({os.cpu_count()} busy loops)",
                ["init", "acted on (143)", "lost (137)", "other", "lost fraction"])
    for n, c in counts.items():
        total = sum(c.values())
        grid.cells.append([n, str(c["acted"]), str(c["lost"]), str(c["other"]),
                           f"{c['lost'] / max(1, total):.3f}"])
    res.tables.append(grid)
    res.notes += others[:20]
    res.raw = {"counts": counts, "trials": trials}
    if "roost" in counts and "tini" in counts:
        lost, lost_tini = counts["roost"]["lost"], counts["tini"]["lost"]
        res.targets.append(Target("podman stop after run -d: roost loses no more TERMs than "
                                  "tini", lost <= lost_tini,
                                  f"roost {lost}/{trials}, tini {lost_tini}/{trials}"))
        direct = counts.get("roost (interpreter directly)", {}).get("lost")
        res.headlines.append(f"podman stop right after run -d, under load: roost lost {lost} of "
                             f"{trials} TERMs, tini {lost_tini}"
                             + ("" if direct is None else
                                f", roost without its launcher {direct}"))
    return res
