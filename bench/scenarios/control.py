"""Control round trip: one `status` of every service (10 idle services running).

In-process: roost's protocol on a new connection to its socket (connect, one
request line, one reply line), against supervisord's XML-RPC getAllProcessInfo
over its unix socket.  CLI, a whole process each: `roost status --json`,
`supervisorctl status`, `circusctl status`, `sv status` (all 10 dirs),
`s6-svstat` (one service dir: it takes only one).  All supervisors run at once;
requests are interleaved.  roost's replies are also checked against the
documented shape (a list of objects with name, state, pid, restarts, last_exit).
"""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any

from bench import roostctl, supervisors
from bench.core import Ctx, Result, Table, interleave
from bench.procs import Owned

NAME = "control"
TITLE = "Control round trip"
ORDER = 80

FIELDS = ("name", "state", "pid", "restarts", "last_exit")


def check_shape(result: Any, n: int) -> list[str]:
    """Differences between a roost status result and the documented interface."""
    problems = []
    if not isinstance(result, list):
        return [f"status result is {type(result).__name__}, not a list"]
    if len(result) != n:
        problems.append(f"status lists {len(result)} services, expected {n}")
    for item in result[:1]:
        missing = [f for f in FIELDS if f not in item]
        if missing:
            problems.append(f"status entries lack {', '.join(missing)}")
    return problems


def run(ctx: Ctx) -> Result:
    """Start every supervisor with 10 services, then time status requests."""
    res = Result(NAME, TITLE, __doc__ or "")
    classes, why = supervisors.available(ctx)
    for name, reason in why.items():
        res.notes.append(f"{name} not measured: {reason}")
    inproc = Table("In-process status round trip", "ms", scale=1e3, roost="roost (socket)")
    cli = Table("Status CLI, process start to exit", "ms", scale=1e3, roost="roost status")
    running: dict[str, supervisors.Supervisor] = {}
    with contextlib.ExitStack() as stack:
        for cls in classes:
            try:
                sup, _, _ = stack.enter_context(
                    supervisors.run_one(cls, ctx, supervisors.idle_services(10), "ctl"))
            except (TimeoutError, RuntimeError, OSError) as exc:
                res.notes.append(f"{cls.name}: {exc}")
                continue
            running[cls.name] = sup
        owned = stack.enter_context(Owned())

        calls: dict[str, Any] = {}
        if "roost" in running:
            roost = running["roost"]
            assert isinstance(roost, supervisors.Roost)
            calls["roost (socket)"] = lambda r=roost: roostctl.status(r.addr)
            res.notes += [f"roost interface: {p}" for p in check_shape(roost.status(), 10)]
        if "supervisord" in running:
            sd = running["supervisord"]
            assert isinstance(sd, supervisors.Supervisord)
            calls["supervisord (XML-RPC)"] = lambda s=sd: supervisors.supervisor_rpc(
                s.sock, "supervisor.getAllProcessInfo")
        for rep, name in interleave(list(calls), ctx.n(50, 500), warmup=5):
            t0 = time.perf_counter()
            calls[name]()
            dt = time.perf_counter() - t0
            if rep >= 0:
                inproc.add(name, [dt])

        labels = {"roost": "roost status", "supervisord": "supervisorctl status",
                  "circus": "circusctl status", "runit": "sv status", "s6": "s6-svstat"}
        argvs = {labels[k]: v.status_cli() for k, v in running.items()}
        bad: dict[str, str] = {}
        for rep, name in interleave(list(argvs), ctx.n(5, 30), warmup=2):
            t0 = time.perf_counter()
            out = owned.run(argvs[name], timeout=60)
            dt = time.perf_counter() - t0
            if out.returncode != 0:
                bad[name] = f"exit {out.returncode}: {out.stderr.decode().strip()[-200:]}"
            if name == "roost status" and rep == 0:
                try:
                    res.notes += [f"roost status --json: {p}"
                                  for p in check_shape(json.loads(out.stdout), 10)]
                except json.JSONDecodeError:
                    res.notes.append("roost status --json did not print JSON")
            if rep >= 0:
                cli.add(name, [dt])
        res.notes += [f"{k}: {v}" for k, v in bad.items()]
    res.tables += [inproc, cli]
    for t, peer in ((inproc, "supervisord (XML-RPC)"), (cli, "supervisorctl status")):
        r = t.ratio(peer)
        if r is not None:
            res.headlines.append(f"control: {t.roost} takes {r:.2f}x {peer}")
    return res
