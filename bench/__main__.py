"""python -m bench [--quick] [--only NAME[,NAME]] [--reps N] [--no-install]

Runs roost's side-by-side benchmarks against its peers and writes bench/RESULTS.md,
plots under bench/plots/ and raw JSON under bench/out/.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from bench import installs, native, peers, report
from bench.core import (
    DEV_VENV,
    OUT,
    PLOTS,
    REPO,
    RESULTS_MD,
    Ctx,
    Skip,
    real_python,
    rmtree_quiet,
)
from bench.scenarios import discover


def log(msg: str) -> None:
    """Progress on stderr, with a timestamp."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _lines(path: str) -> list[str]:
    try:
        return Path(path).read_text().splitlines()
    except OSError:
        return []


def machine() -> dict[str, str]:
    """What the numbers were measured on."""
    info: dict[str, str] = {"date": datetime.datetime.now().astimezone().isoformat(" ", "seconds")}
    info["nproc"] = str(os.cpu_count())
    cpu = [line.split(":", 1)[1].strip() for line in _lines("/proc/cpuinfo")
           if line.startswith("model name")]
    info["cpu"] = cpu[0] if cpu else platform.processor() or "?"
    kb = [int(line.split()[1]) for line in _lines("/proc/meminfo") if line.startswith("MemTotal")]
    info["memory"] = f"{kb[0] / 1024 / 1024:.1f} GiB" if kb else "?"
    info["kernel"] = platform.release()
    py = subprocess.run([real_python(), "-c", "import sys; print(sys.version.split()[0])"],
                        capture_output=True, text=True, timeout=30)
    info["python (roost's and the peers')"] = f"{py.stdout.strip()} ({real_python()})"
    info["load average at start"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return info


def roost_version() -> str:
    """roost's package version and the checkout's commit, as far as they can be read."""
    py = DEV_VENV / "bin" / "python"
    v = subprocess.run([str(py), "-c", "import importlib.metadata as m; print(m.version('roost'))"],
                       capture_output=True, text=True, timeout=30).stdout.strip()
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True, timeout=30).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "src"],
                           capture_output=True, text=True, timeout=30).stdout.strip()
    return f"{v or '?'} (commit {head or '?'}{', src/ has uncommitted changes' if dirty else ''})"


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the chosen scenarios, write the report."""
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[2])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions (< 3 minutes)")
    ap.add_argument("--only", help="comma-separated scenario names")
    ap.add_argument("--reps", type=int, help="repetitions per subject (overrides defaults)")
    ap.add_argument("--no-install", action="store_true", help="do not install missing peers")
    ap.add_argument("--list", action="store_true", help="list the scenarios and exit")
    args = ap.parse_args(argv)

    mods = discover()
    if args.list:
        for m in mods:
            print(f"{m.NAME:15} {m.TITLE}" + ("  (planned)" if hasattr(m, "PLANNED") else ""))
        return 0
    if args.only:
        wanted = {w.strip() for w in args.only.split(",") if w.strip()}
        unknown = wanted - {m.NAME for m in mods}
        if unknown:
            ap.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
        mods = [m for m in mods if m.NAME in wanted]

    if os.geteuid() != 0:
        log("not root: PID namespaces and package installs need root")
        return 2

    # SIGTERM and SIGHUP unwind like ^C so that every finally: kills what it started.
    def stop(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)

    t_start = time.monotonic()
    OUT.mkdir(parents=True, exist_ok=True)
    native.build()
    found = peers.ensure(log, install=not args.no_install)
    roost_reason = installs.build(log)
    roost_ok, roost_reason = (False, roost_reason) if roost_reason else \
        peers.roost_status(installs.VENV_BIN / "roost")
    log("roost: " + ("found" if roost_ok else f"not measured ({roost_reason})"))
    workroot = OUT / f"work-{os.getpid()}"
    ctx = Ctx(quick=args.quick, reps=args.reps, peers=found, roost_ok=roost_ok,
              roost_reason=roost_reason, workroot=workroot, log=log)
    versions = {"roost": roost_version() if roost_ok else f"not measured: {roost_reason}",
                **found.versions}
    run: dict[str, Any] = {
        "command": "python -m bench" + ("" if not argv and len(sys.argv) < 2
                                        else " " + shlex.join(argv or sys.argv[1:])),
        "machine": machine(), "versions": versions, "missing": found.missing,
        "roost_ok": roost_ok, "roost_reason": roost_reason, "scenarios": [],
    }
    try:
        for m in mods:
            if hasattr(m, "PLANNED"):
                run["scenarios"].append({"name": m.NAME, "title": m.TITLE,
                                         "describes": m.__doc__ or "", "planned": m.PLANNED})
                continue
            log(f"scenario {m.NAME}: {m.TITLE}")
            t0 = time.monotonic()
            load_start = os.getloadavg()[0]
            try:
                res = m.run(ctx)
                data = res.to_json()
            except Skip as exc:
                data = {"name": m.NAME, "title": m.TITLE, "describes": m.__doc__ or "",
                        "skipped": str(exc), "tables": []}
            except Exception as exc:  # noqa: BLE001 - a failed scenario must not lose the others
                traceback.print_exc()
                data = {"name": m.NAME, "title": m.TITLE, "describes": m.__doc__ or "",
                        "skipped": f"failed: {type(exc).__name__}: {exc}", "tables": []}
            data["wall_s"] = time.monotonic() - t0
            data["load"] = {"start": load_start, "end": os.getloadavg()[0]}
            log(f"scenario {m.NAME} done in {data['wall_s']:.1f} s")
            run["scenarios"].append(data)
            (OUT / f"{m.NAME}.json").write_text(json.dumps(report.nan_to_none(data), indent=1))
    finally:
        rmtree_quiet(workroot)
    run["wall_s"] = time.monotonic() - t_start
    results = OUT / "results.json"
    results.write_text(json.dumps(report.nan_to_none(run), indent=1))
    if found.bench_python:
        proc = subprocess.run([found.bench_python, "-m", "bench.plot", str(results), str(PLOTS)],
                              cwd=REPO, capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            log(f"plots failed: {proc.stderr.strip()[-500:]}")
    RESULTS_MD.write_text(report.render(run))
    log(f"wrote {RESULTS_MD} in {run['wall_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
