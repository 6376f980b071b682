"""Process tracking, by each means roost has: a forking service's start and full stop, and a
fork storm followed without losing a process.

Each means runs in the environment where roost would pick it: `cgroup` as PID 1 of PID,
mount and cgroup namespaces with a private cgroup2 mount (its root a fresh cgroup under the
host's cgroup2 hierarchy, removed afterwards); `proc-connector` as a plain subreaper on the
host; `lineage` as PID 1 of a PID namespace. ROOST_TRACKING forces the means.

* Start / stop: a classic daemon (fork, setsid, fork, pid file) with 50 workers. Start is
  `start` on the control socket until the service is up (launcher exited, pid file read
  and verified); stop is `stop` until the service is down, which roost reports only once
  all 51 processes are gone.
* Fork storm: a simple service's main process creates N escapees as fast as it can, each
  with fork, setsid, fork, exit (2 forks; the survivor sleeps, re-parented to roost, in a
  session of its own). Measured: forks per second achieved; processes roost lists for the
  service once the storm is over, against the N+1 alive; processes left alive after
  `stop` (each one a fork roost lost); roost's CPU time over the storm.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
import uuid
from pathlib import Path
from typing import Any

from bench import roostctl
from bench.core import (
    ROOST,
    Ctx,
    Grid,
    Result,
    Skip,
    Table,
    Target,
    fmt,
    real_python,
    rmtree_quiet,
)
from bench.procs import Owned

NAME = "tracking"
TITLE = "Process tracking: forking service start/stop and a fork storm, per tracking means"
ORDER = 96

MEANS = ("cgroup", "proc-connector", "lineage")
UNIFIED = Path("/sys/fs/cgroup/unified")
WORKERS = 50

DAEMON = r'''
import os, sys, time
pid_file, workers = sys.argv[1], int(sys.argv[2])
if os.fork():
    os._exit(0)
os.setsid()
if os.fork():
    os._exit(0)
for _ in range(workers):
    if os.fork() == 0:
        while True:
            time.sleep(60)
with open(pid_file + ".tmp", "w") as f:
    f.write(f"{os.getpid()}\n")
os.rename(pid_file + ".tmp", pid_file)
while True:
    time.sleep(60)
'''

STORM = r'''
import os, sys, time
n, report = int(sys.argv[1]), sys.argv[2]
t0 = time.monotonic()
for _ in range(n):
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            while True:
                time.sleep(60)
        os._exit(0)
    os.wait()
with open(report, "w") as f:
    f.write(f"{2 * n} {time.monotonic() - t0}\n")
while True:
    time.sleep(60)
'''


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _alive_with(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and marker in _cmdline(int(entry)):
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    if f.read().rsplit(b")", 1)[1].split()[0] != b"Z":
                        found.append(int(entry))
            except OSError:
                continue
    return found


def _cpu_ticks(pid: int) -> int:
    """utime + stime of a process, in clock ticks."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


class Instance:
    """One roost under one tracking means, with the bench's services configured."""

    def __init__(self, ctx: Ctx, means: str, owned: Owned) -> None:
        self.means = means
        self.dir = ctx.workdir(f"tracking-{means}")
        self.marker = f"roost-bench-trk-{uuid.uuid4().hex[:8]}"
        self.addr = f"@roost-bench-trk-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.cgroup: Path | None = None
        conf = self.dir / "conf"
        conf.mkdir()
        (self.dir / "logs").mkdir()
        py = real_python()
        (self.dir / "daemon.py").write_text(DAEMON)
        (self.dir / "storm.py").write_text(STORM)
        self.pid_file = self.dir / "daemon.pid"
        self.report = self.dir / "storm.report"
        self._service(conf, "daemon", [py, str(self.dir / "daemon.py"), str(self.pid_file),
                                       str(WORKERS), self.marker],
                      ['type = "forking"', f'pid_file = "{self.pid_file}"'])
        self.storm_n = 0
        self._conf = conf
        self._py = py
        env = dict(os.environ, ROOST_TRACKING=means)
        env.pop("ROOST_CGROUP", None)
        roost = [str(ROOST), "up", "-c", str(conf), "--control", self.addr, "--log-dir",
                 str(self.dir / "logs"), "--quiet"]
        log = (self.dir / "roost.out").open("wb")
        unshare = ["unshare", "--pid", "--fork", "--kill-child", "--mount-proc"]
        if means == "proc-connector":
            env["ROOST_CGROUP"] = "off"
            argv = roost
        elif means == "cgroup":
            if not (UNIFIED / "cgroup.procs").exists():
                raise Skip(f"no cgroup2 hierarchy at {UNIFIED}")
            self.cgroup = UNIFIED / f"roost-bench-{uuid.uuid4().hex[:10]}"
            self.cgroup.mkdir()
            inner = 'mount -t cgroup2 none /sys/fs/cgroup && exec "$@"'
            argv = ["sh", "-c", f'echo $$ > {self.cgroup}/cgroup.procs && exec "$@"', "sh",
                    *unshare, "--cgroup", "--mount", "sh", "-c", inner, "sh", *roost]
        else:
            argv = [*unshare, *roost]
        self.proc = owned.popen(argv, stdout=log, stderr=log, env=env)
        log.close()
        deadline = time.monotonic() + 20
        while True:
            try:
                roostctl.request(self.addr, "ping", timeout=2)
                break
            except (OSError, roostctl.ControlError):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"roost ({means}) did not come up: "
                                       f"{(self.dir / 'roost.out').read_text()[-500:]}") from None
                time.sleep(0.02)

    @staticmethod
    def _service(conf: Path, name: str, argv: list[str], extra: list[str]) -> None:
        lines = ["command = " + json.dumps(argv), "autostart = false", 'restart = "never"',
                 "stop_timeout = 10", *extra]
        (conf / f"{name}.toml").write_text("\n".join(lines) + "\n")

    def add_storm(self, n: int) -> None:
        self.storm_n = n
        self._service(self._conf, "storm", [self._py, str(self.dir / "storm.py"), str(n),
                                            str(self.report), self.marker], [])
        roostctl.request(self.addr, "reload", timeout=10)

    def request(self, cmd: str, timeout: float = 60, **args: Any) -> Any:
        return roostctl.request(self.addr, cmd, timeout=timeout, **args)

    def roost_pid(self) -> int:
        """The host PID of roost's interpreter."""
        pids = [p for p in [self.proc.pid, *_descendants(self.proc.pid)]
                if "roost up" in _cmdline(p) and "unshare" not in _cmdline(p)
                and not _cmdline(p).startswith("sh ")]
        return pids[0] if pids else self.proc.pid

    def close(self) -> None:
        with contextlib.suppress(OSError, roostctl.ControlError):
            self.request("shutdown", timeout=5)
        with contextlib.suppress(Exception):
            self.proc.wait(timeout=20)
        for pid in _alive_with(self.marker):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        if self.cgroup is not None:
            deadline = time.monotonic() + 10
            while self.cgroup.exists() and time.monotonic() < deadline:
                dirs = sorted((p for p in self.cgroup.rglob("*") if p.is_dir()),
                              key=lambda p: -len(p.parts))
                for d in [*dirs, self.cgroup]:
                    with contextlib.suppress(OSError):
                        d.rmdir()
                time.sleep(0.05)
        rmtree_quiet(self.dir)


def _descendants(pid: int) -> list[int]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
        except OSError:
            continue
        kids.setdefault(ppid, []).append(int(entry))
    out, queue = [], [pid]
    while queue:
        for child in kids.get(queue.pop(), []):
            out.append(child)
            queue.append(child)
    return out


def start_stop(inst: Instance, reps: int) -> tuple[list[float], list[float], list[str]]:
    """Start and fully stop the 50-worker daemon `reps` times: (starts, stops, problems)."""
    starts, stops, problems = [], [], []
    for _ in range(reps):
        with contextlib.suppress(FileNotFoundError):
            inst.pid_file.unlink()
        t0 = time.monotonic()
        rec = inst.request("start", services=["daemon"])[0]
        t1 = time.monotonic()
        if rec["state"] != "up":
            problems.append(f"start: {rec['state']} {rec.get('last_exit')}")
            continue
        members = len(inst.request("tree", services=["daemon"])["services"][0]["processes"])
        if members != WORKERS + 1:
            problems.append(f"tree listed {members} processes, not {WORKERS + 1}")
        t2 = time.monotonic()
        rec = inst.request("stop", services=["daemon"])[0]
        t3 = time.monotonic()
        left = len(_alive_with(inst.marker))
        if rec["state"] != "down" or left:
            problems.append(f"stop: {rec['state']}, {left} processes left")
        starts.append(t1 - t0)
        stops.append(t3 - t2)
    return starts, stops, problems


def storm(inst: Instance, n: int) -> dict[str, float]:
    """Run the fork storm once; what roost saw and what it left."""
    inst.add_storm(n)
    rpid = inst.roost_pid()
    cpu0 = _cpu_ticks(rpid)
    inst.request("start", services=["storm"])
    deadline = time.monotonic() + 120
    while not inst.report.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    if not inst.report.exists():
        raise RuntimeError("the storm did not finish within 120 s")
    forks, seconds = inst.report.read_text().split()
    time.sleep(0.3)
    cpu = (_cpu_ticks(rpid) - cpu0) / os.sysconf("SC_CLK_TCK")
    alive = len(_alive_with(inst.marker))
    seen = len(inst.request("tree", services=["storm"])["services"][0]["processes"])
    inst.request("stop", services=["storm"])
    time.sleep(0.3)
    left = len(_alive_with(inst.marker))
    return {"forks": float(forks), "seconds": float(seconds), "alive": alive, "seen": seen,
            "left": left, "cpu": cpu}


def run(ctx: Ctx) -> Result:
    """Start/stop a 50-worker forking service and follow a fork storm, by each means."""
    res = Result(NAME, TITLE, __doc__ or "")
    if not ctx.roost_ok:
        res.skipped = ctx.roost_reason
        return res
    if os.geteuid() != 0:
        res.skipped = "needs root (namespaces, cgroups, the proc connector)"
        return res
    reps = ctx.n(3, 10)
    n = 300 if ctx.quick else 1000
    start_t = Table("Forking service with 50 workers: start until up", "ms", scale=1e3,
                    roost="cgroup", baselines=("proc-connector", "lineage"))
    stop_t = Table("Forking service with 50 workers: stop until all 51 processes are gone",
                   "ms", scale=1e3, roost="cgroup", baselines=("proc-connector", "lineage"))
    grid = Grid(f"Fork storm: {n} escapees (fork, setsid, fork), {2 * n} forks",
                ["means", "forks/s", "alive after", "listed by roost", "left after stop",
                 "roost CPU (s)"])
    for means in MEANS:
        owned = Owned()
        inst = None
        try:
            inst = Instance(ctx, means, owned)
            starts, stops, problems = start_stop(inst, reps)
            start_t.add(means, starts)
            stop_t.add(means, stops)
            res.notes += [f"{means}: {p}" for p in problems]
            s = storm(inst, n)
            rate = s["forks"] / s["seconds"] if s["seconds"] else 0.0
            grid.cells.append([means, fmt(rate, 0), str(int(s["alive"])), str(int(s["seen"])),
                               str(int(s["left"])), fmt(s["cpu"], 2)])
            res.raw[means] = {"starts": starts, "stops": stops, "storm": s}
            if means != "lineage":
                res.targets.append(Target(f"{means}: no fork lost in the storm",
                                          s["left"] == 0 and s["seen"] == s["alive"],
                                          f"{int(s['seen'])} listed of {int(s['alive'])} "
                                          f"alive, {int(s['left'])} left after stop"))
        except Skip as exc:
            res.notes.append(f"{means} not measured: {exc}")
        except (RuntimeError, OSError, roostctl.ControlError) as exc:
            res.notes.append(f"{means}: {exc}")
        finally:
            if inst is not None:
                inst.close()
            owned.close()
    res.tables += [start_t, stop_t, grid]
    row = stop_t.row("cgroup")
    if row is not None:
        res.headlines.append(f"forking service with 50 workers, full stop: cgroup "
                             f"{fmt(row.median * 1e3)} ms" + "".join(
                                 f", {m} {fmt(r.median * 1e3)} ms" for m in MEANS[1:]
                                 if (r := stop_t.row(m)) is not None))
    return res
