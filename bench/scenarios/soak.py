"""Soak: roost's memory and descriptors over a long run of crash loops, reloads and clients.

`roost up` as PID 2 of its own namespace supervises 4 services that crash-loop
(a shell script: a line to its data file, 0.1 s, exit 1; restart_delay 0), 4 that
write a line every 10 ms to
log files rotated at 64 KiB, and 2 idle ones. Meanwhile a client asks `status` every
second, `log` every 5 s, restarts an idle service every 10 s and reloads a changed
configuration every 30 s. Every 10 s the RSS of `roost up` (/proc smaps_rollup; its
config readers are short-lived children) and its descriptors (/proc/PID/fd) are
sampled. After a 60 s warm-up, the growth is the least-squares slope of RSS over time,
in MiB per hour; descriptors must stay flat (the floor they rest at must not rise).

It lasts ROOST_SOAK_SECONDS (default 600; 7200 for the 2 h soak; 120 with --quick).
Only roost is measured: the point is roost against itself over time.
"""

from __future__ import annotations

import os
import time

from bench import native, procs, roostctl, supervisors
from bench.core import Ctx, Grid, Result, Target, fmt, real_python

NAME = "soak"
TITLE = "Soak: memory and descriptors over time"
ORDER = 200

WARMUP = 60.0
SAMPLE = 10.0
WRITER = "import time\nwhile True:\n    print('x' * 120, flush=True)\n    time.sleep(0.01)\n"


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of y over x."""
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    den = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / den if den else 0.0


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def run(ctx: Ctx) -> Result:
    """Run the workload for the soak's duration; sample RSS and descriptors."""
    res = Result(NAME, TITLE, __doc__ or "")
    if not ctx.roost_ok:
        res.skipped = f"roost not measured: {ctx.roost_reason}"
        return res
    duration = 120.0 if ctx.quick else float(os.environ.get("ROOST_SOAK_SECONDS", "600"))
    sup = supervisors.Roost(ctx.peers, ctx.workdir("soak"))
    crashy = sup.dir / "crashy"
    services = [supervisors.Service(f"crash{i}", str(crashy), data=True,
                                    roost_extra={"restart_limit": 1_000_000})
                for i in range(4)]
    script = sup.dir / "writer"
    services += [supervisors.Service(f"writer{i}", str(script)) for i in range(4)]
    services += [supervisors.Service(f"idle{i}", native.path("bench-idle")) for i in range(2)]
    samples: list[tuple[float, int, int]] = []
    counts = {"status": 0, "log": 0, "restart": 0, "reload": 0, "errors": 0}
    with procs.Owned() as owned:
        sup.dir.mkdir(parents=True, exist_ok=True)
        script.write_text(f"#!{real_python()} -IS\n{WRITER}")
        crashy.write_text('#!/bin/sh\necho x >> "$1"\nsleep 0.1\nexit 1\n')
        for exe in (script, crashy):
            exe.chmod(0o755)
        sup.start(owned, services)
        steady = {s.name for s in services if not s.data}
        _wait_steady(sup, steady)
        conf = sup.dir / "conf"
        # Log rotation at 64 KiB: the writers rotate their files every few seconds.
        (conf / "roost.toml").write_text("log_max_bytes = 65536\nlog_keep = 2\n")
        original = (conf / "idle1.toml").read_text()
        roostctl.request(sup.addr, "reload", timeout=30)
        _wait_steady(sup, steady)
        assert sup.ns is not None
        main = sup.ns.main_pid
        t0 = time.monotonic()
        next_sample = t0
        tick = 0
        while (now := time.monotonic()) - t0 < duration:
            if now >= next_sample:
                rss, _ = procs.rss_pss([main])
                samples.append((now - t0, rss, _fds(main)))
                next_sample += SAMPLE
            try:
                roostctl.status(sup.addr)
                counts["status"] += 1
                if tick % 5 == 0:
                    roostctl.request(sup.addr, "log", services=["writer0"], lines=20)
                    counts["log"] += 1
                if tick % 10 == 0:
                    roostctl.request(sup.addr, "restart", services=[f"idle{tick // 10 % 2}"],
                                     timeout=30)
                    counts["restart"] += 1
                if tick % 30 == 15:  # a changed service: the reload restarts it
                    (conf / "idle1.toml").write_text(
                        original + f'environment = {{ SOAK = "{tick}" }}\n')
                    roostctl.request(sup.addr, "reload", timeout=30)
                    counts["reload"] += 1
            except (roostctl.ControlError, OSError) as exc:
                counts["errors"] += 1
                if counts["errors"] <= 3:
                    res.notes.append(f"client error at {now - t0:.0f} s: {exc}")
            tick += 1
            time.sleep(max(0.0, 1.0 - (time.monotonic() - now)))
        lives = sum(procs_lives(sup.data_file(s)) for s in services if s.data)
        sup.stop(60)
    settled = [(t, rss, fds) for t, rss, fds in samples if t >= WARMUP]
    if len(settled) < 3:
        res.skipped = f"too short: {len(settled)} samples after the {WARMUP:.0f} s warm-up"
        return res
    growth = slope([(t / 3600, rss / 2**20) for t, rss, _ in settled])
    fds = [f for _, _, f in settled]
    third = max(1, len(fds) // 3)
    # A spawn or a rotation in progress holds a descriptor or two for a moment, so a
    # sample may catch one: a leak shows as a floor that rises, so flat means the last
    # third of the run never rests higher than the first did.
    flat = min(fds[-third:]) <= min(fds[:third])
    grid = Grid("Soak", ["duration", "crash-loop lives", "requests", "RSS after warm-up",
                         "RSS at end", "RSS growth", "descriptors (min-max)"])
    requests = ", ".join(f"{k} {v}" for k, v in counts.items())
    grid.cells.append([f"{duration / 60:.0f} min", str(lives), requests,
                       f"{fmt(settled[0][1] / 2**20)} MiB", f"{fmt(settled[-1][1] / 2**20)} MiB",
                       f"{fmt(growth)} MiB/h", f"{min(fds)}-{max(fds)}"])
    res.tables.append(grid)
    res.raw["samples"] = samples
    res.raw["counts"] = counts
    res.targets.append(Target(f"soak ({duration / 60:.0f} min): RSS growth < 1 MiB/h",
                              growth < 1.0, f"{fmt(growth)} MiB/h"))
    res.targets.append(Target(f"soak ({duration / 60:.0f} min): descriptors flat", flat,
                              f"{min(fds)}-{max(fds)}; at rest {min(fds[:third])} in the first "
                              f"third, {min(fds[-third:])} in the last"))
    res.headlines.append(f"soak ({duration / 60:.0f} min, {lives} crash-loop lives): RSS "
                         f"{fmt(growth)} MiB/h, descriptors {min(fds)}-{max(fds)}")
    return res


def _wait_steady(sup: supervisors.Roost, names: set[str]) -> None:
    """Wait until every service but the crash loops is up (they never stay up)."""
    deadline = time.monotonic() + 60
    while True:
        try:
            if all(r["state"] == "up" for r in roostctl.status(sup.addr) if r["name"] in names):
                return
        except (roostctl.ControlError, OSError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError("the writers and idle services were not up within 60 s")
        time.sleep(0.1)


def procs_lives(path: str) -> int:
    """How many lives a crashy service logged."""
    try:
        with open(path, "rb") as f:
            return f.read().count(b"\n")
    except FileNotFoundError:
        return 0
