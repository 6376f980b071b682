"""Start-up overhead: wall time of `INIT -- true`, spawn to reap.

Each container init runs `true` and exits with its status; the floor is a direct
exec of `true`, and the reference for a Python init is a bare `python3 -I -S -c pass`
(the real interpreter, no pyenv shim).  A second reference, `python3 -I -S forks
true`, imports os, forks, execs `true` and waits: the least any Python init does.
Measured twice: as a plain process, and as PID 1 of a fresh PID namespace (`unshare
--pid --fork --mount-proc`, whose own cost is the namespace table's floor).  Own
timing loop: posix_spawn + waitpid, stdout and stderr on /dev/null, subjects
interleaved after a warm-up round.
"""

from __future__ import annotations

import os
import shutil
import time

from bench import inits
from bench.core import Ctx, Result, Table, Target, fmt, interleave, real_python
from bench.installs import VENV_BIN, interpreter
from bench.procs import UNSHARE

NAME = "startup"
TITLE = "Start-up overhead"
ORDER = 10

TRUE = shutil.which("true") or "/bin/true"
BARE = "python3 -I -S -c pass"
FORKS = "python3 -I -S forks true"
# roost as its interpreter runs it, without the launcher's two execs (sh, env) that block
# every signal before the interpreter starts: what the launcher costs.
DIRECT = "roost (interpreter directly)"
FORK_TRUE = (f"import os\npid = os.fork()\nif pid == 0:\n    os.execv({TRUE!r}, ['true'])\n"
             "os.waitpid(pid, 0)")
DEVNULL_ACTIONS = [
    (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
    (os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0),
    (os.POSIX_SPAWN_OPEN, 2, "/dev/null", os.O_WRONLY, 0),
]


def time_once(argv: list[str]) -> tuple[float, int]:
    """Seconds from spawn to reap, and the exit status."""
    t0 = time.perf_counter()
    pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=DEVNULL_ACTIONS)
    _, status = os.waitpid(pid, 0)
    return time.perf_counter() - t0, os.waitstatus_to_exitcode(status)


def run(ctx: Ctx) -> Result:
    """Time every init and the two baselines, plain and as a namespace's PID 1."""
    res = Result(NAME, TITLE, __doc__ or "")
    ok, why = inits.available(ctx)
    for name, reason in why.items():
        res.notes.append(f"{name} not measured: {reason}")
    subjects: dict[str, list[str]] = {
        "true (direct exec)": [TRUE],
        BARE: [real_python(), "-I", "-S", "-c", "pass"],
        FORKS: [real_python(), "-I", "-S", "-c", FORK_TRUE],
    }
    for name, prefix in ok.items():
        subjects[name] = [*prefix, TRUE]
    if "roost" in ok:
        subjects[DIRECT] = [interpreter(VENV_BIN), "-I", "-S", str(VENV_BIN / "roost-python"),
                            "run", "--", TRUE]
    unshare = shutil.which("unshare") or "/usr/bin/unshare"
    ns_subjects = {k: [unshare, *UNSHARE[1:], *v] for k, v in subjects.items()
                   if k not in (BARE, FORKS)}
    reps = ctx.n(30, 200)
    failures: dict[str, int] = {}
    for label, subj in (("plain process", subjects), ("PID 1 of a new PID namespace", ns_subjects)):
        table = Table(f"Spawn to exit, {label}", "ms", scale=1e3,
                      baselines=("true (direct exec)", BARE, FORKS))
        samples: dict[str, list[float]] = {k: [] for k in subj}
        for rep, name in interleave(list(subj), reps, warmup=3):
            dt, code = time_once(subj[name])
            if code != 0:
                failures[name] = code
            if rep >= 0:
                samples[name].append(dt)
        for name, xs in samples.items():
            table.add(name, xs)
        res.tables.append(table)
        res.raw[label] = samples
    for name, code in failures.items():
        res.notes.append(f"{name} exited {code} (expected 0) at least once")
    plain = res.tables[0]
    assert isinstance(plain, Table)
    r = plain.ratio(BARE)
    if r is None:
        res.targets.append(Target("start-up <= 1.5x bare python3 -I -S -c pass", None,
                                  "roost not measured"))
    else:
        roost_ms = plain.row("roost").median * 1e3  # type: ignore[union-attr]
        bare_ms = plain.row(BARE).median * 1e3  # type: ignore[union-attr]
        forks_ms = plain.row(FORKS).median * 1e3  # type: ignore[union-attr]
        direct_ms = plain.row(DIRECT).median * 1e3  # type: ignore[union-attr]
        why = (f"of roost's {fmt(roost_ms - bare_ms)} ms over the bare start, "
               f"{fmt(roost_ms - direct_ms)} ms are the launcher's two execs (sh, then env, "
               f"which blocks every signal before the interpreter starts); started by its "
               f"interpreter directly, roost takes {fmt(direct_ms / bare_ms)}x the bare start, "
               f"against {fmt(forks_ms / bare_ms)}x for `{FORKS}` (import os, fork, exec, "
               "wait: the least a Python init does).")
        res.targets.append(Target("start-up <= 1.5x bare python3 -I -S -c pass", r <= 1.5,
                                  f"{fmt(r)}x ({fmt(roost_ms)} ms)", why))
        res.headlines.append(f"start-up: roost run -- true is {fmt(r)}x a bare python3 -I -S")
        base = plain.ratio("roost (base)")
        if base is not None:
            res.headlines.append(f"start-up: roost is {fmt(base)}x roost (base), "
                                 "now with its signals blocked from the exec")
        for peer in ("tini", "dumb-init", "catatonit"):
            pr = plain.ratio(peer)
            if pr is not None:
                res.headlines.append(f"start-up: roost is {fmt(pr)}x {peer}")
                break
    return res
