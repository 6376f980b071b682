"""1,000 trials of init and `roost poweroff` started in the same instant: none may be lost.

Each trial runs in a network namespace of its own (the abstract @roost/control is per
network namespace), where a small runner spawns the client, then `unshare --pid --fork
--mount-proc roost init`, and waits for both. Every request must be acknowledged (the
client exits 0) and carried out (the init dies of the SIGINT that reboot(2) POWER_OFF
means in a PID namespace). The latency distribution is printed; the figures are in
docs/system-init.md. Set ROOST_SYSTEM_TRIALS to change the count.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.ns.test_system import SLEEPER, launcher, write_config
from tests.support import require_unshare

TRIALS = int(os.environ.get("ROOST_SYSTEM_TRIALS", "1000"))
WORKERS = int(os.environ.get("ROOST_SYSTEM_WORKERS", "6"))

RUNNER = r'''
import json, os, signal, sys, time
config, roost = sys.argv[1], sys.argv[2]
null = os.open(os.devnull, os.O_RDWR)
log = os.open(sys.argv[3], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
quiet = [(os.POSIX_SPAWN_DUP2, null, 0), (os.POSIX_SPAWN_DUP2, null, 1),
         (os.POSIX_SPAWN_DUP2, log, 2)]
logged = [(os.POSIX_SPAWN_DUP2, null, 0), (os.POSIX_SPAWN_DUP2, log, 1),
          (os.POSIX_SPAWN_DUP2, log, 2)]
t0 = time.monotonic()
client = os.posix_spawn(roost, [roost, "poweroff", "--timeout", "60"], os.environ,
                        file_actions=quiet)
init = os.posix_spawnp("unshare", ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child",
                                   roost, "init", "-c", config], os.environ, file_actions=logged)
done = {}
while len(done) < 2 and time.monotonic() - t0 < 90:
    pid, status = os.waitpid(-1, os.WNOHANG)
    if pid == 0:
        time.sleep(0.001)
    else:
        done[pid] = (time.monotonic() - t0, status)
for pid in (client, init):
    if pid not in done:
        os.kill(pid, signal.SIGKILL)
        done[pid] = (-1.0, os.waitpid(pid, 0)[1])
print(json.dumps({"client": os.waitstatus_to_exitcode(done[client][1]), "ack": done[client][0],
                  "init": os.waitstatus_to_exitcode(done[init][1]), "done": done[init][0]}))
'''


def _trial(runner: Path, config: Path, roost: Path, log: Path) -> dict[str, float]:
    out = subprocess.run(["unshare", "--net", "--", os.path.realpath(sys.executable), "-I", "-S",
                          str(runner), str(config), str(roost), str(log)],
                         capture_output=True, text=True, timeout=120, check=False)
    try:
        return json.loads(out.stdout)
    except ValueError:
        return {"client": -999, "init": -999, "ack": -1.0, "done": -1.0,
                "error": out.stdout + out.stderr}  # type: ignore[dict-item]


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {"min": ordered[0], "p50": statistics.median(ordered), "p90": at(0.90),
            "p99": at(0.99), "max": ordered[-1]}


@pytest.mark.timeout(600)
def test_thousand_simultaneous_starts_and_poweroffs(tmp_path: Path) -> None:
    require_unshare()
    roost = launcher(tmp_path / "bin")
    config = write_config(tmp_path / "cfg", {"sleeper": SLEEPER})
    runner = tmp_path / "runner.py"
    runner.write_text(RUNNER)
    log = tmp_path / "init.log"
    t0 = time.monotonic()
    with ThreadPoolExecutor(WORKERS) as pool:
        results = list(pool.map(lambda _i: _trial(runner, config, roost, log), range(TRIALS)))
    wall = time.monotonic() - t0
    lost = [r for r in results if r["client"] != 0]
    not_done = [r for r in results if r["init"] != -signal.SIGINT]
    ack = percentiles([r["ack"] * 1e3 for r in results if r["client"] == 0] or [0.0])
    done = percentiles([r["done"] * 1e3 for r in results if r["init"] == -signal.SIGINT] or [0.0])
    during_boot = log.read_text(errors="replace").count("during boot")
    report = (f"{TRIALS} trials in {wall:.1f}s ({WORKERS} at a time); requests heard during "
              f"boot: {during_boot}\n"
              "acknowledged (ms from spawn): "
              + " ".join(f"{k}={v:.0f}" for k, v in ack.items()) + "\n"
              "carried out (ms from spawn, init gone): "
              + " ".join(f"{k}={v:.0f}" for k, v in done.items()))
    print("\n" + report)
    assert not lost, f"{len(lost)} requests not acknowledged, e.g. {lost[:3]}\n{report}"
    assert not not_done, f"{len(not_done)} inits did not power off, e.g. {not_done[:3]}\n{report}"
