"""The sd_notify watchdog and EXTEND_TIMEOUT_USEC= against a live roost: a daemon that stops
sending WATCHDOG=1 is aborted and restarted within watchdog_sec (and a little); WATCHDOG_USEC=
changes the timeout of the run that sends it; a slow start that keeps asking for more time
outlives start_timeout, and so does a slow stop its stop_timeout."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tests.ns.supervisor_kit import ConfigDir, both_modes, running
from tests.support import wait_for

pytestmark = pytest.mark.timeout(120)

# Says what roost gave it, READY=1, a few keep-alives, then hangs. No core dump: the
# watchdog's SIGABRT would otherwise leave one wherever cores go.
HANGS = """
import os, resource, socket, sys, time
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
address = "\\0" + os.environ["NOTIFY_SOCKET"][1:]
print("started", time.monotonic(), os.environ.get("WATCHDOG_USEC"),
      os.environ.get("WATCHDOG_PID") == str(os.getpid()), flush=True)
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.sendto(sys.argv[1].encode().replace(b";", b"\\n"), address)
for _ in range(5):
    time.sleep(0.2)
    s.sendto(b"WATCHDOG=1", address)
print("last keep-alive", time.monotonic(), flush=True)
while True:
    time.sleep(60)
"""


@both_modes
def test_a_daemon_that_stops_its_keepalives_is_restarted(tmp_path: Path, mode: str) -> None:
    watchdog = 1.0
    config = ConfigDir(tmp_path / "conf")
    config.service("hung", type="notify", command=[*config.python("hung", HANGS), "READY=1"],
                   watchdog_sec=watchdog, restart="on-watchdog", restart_delay=0,
                   stop_timeout=5)
    with running(config, mode, tmp_path) as roost:
        first = roost.wait_output(r"hung \| started ([0-9.]+) (\S+) (\S+)")
        assert first.group(2, 3) == ("1000000", "True"), first.group(0)
        last = float(roost.wait_output(r"hung \| last keep-alive ([0-9.]+)").group(1))
        wait_for(lambda: len(re.findall(r"hung \| started ", roost.output())) >= 2,
                 timeout=15)
        again = float(re.findall(r"hung \| started ([0-9.]+)", roost.output())[1])
        gap = again - last
        print(f"watchdog_sec {watchdog:g}: restarted {gap:.3f}s after the last WATCHDOG=1 "
              f"({(gap / watchdog - 1) * 100:+.1f}% over watchdog_sec)")
        assert watchdog * 0.95 <= gap < watchdog + 5.0, gap
        record = roost.status("hung")
        assert record["restarts"] == 1 and record["last_exit"] == "watchdog", record
        assert "hung: stopping: watchdog" in roost.output()


@both_modes
def test_watchdog_usec_shortens_this_run_and_never_means_failed(tmp_path: Path,
                                                                 mode: str) -> None:
    config = ConfigDir(tmp_path / "conf")
    config.service("short", type="notify", watchdog_sec=60, restart="never",
                   command=[*config.python("short", HANGS), "READY=1;WATCHDOG_USEC=300000"])
    with running(config, mode, tmp_path) as roost:
        began = time.monotonic()
        record = roost.wait_state("short", "failed", timeout=20)
        print(f"WATCHDOG_USEC=300000 under watchdog_sec = 60: failed after "
              f"{time.monotonic() - began:.2f}s")
        assert record["last_exit"] == "watchdog" and record["reason"] == "watchdog", record


@both_modes
def test_watchdog_trigger_fires_at_once(tmp_path: Path, mode: str) -> None:
    # No watchdog_sec at all: WATCHDOG=trigger still ends the service as hung, at once.
    config = ConfigDir(tmp_path / "conf")
    config.service("trigger", type="notify", restart="never",
                   command=[*config.python("trigger", HANGS), "READY=1;WATCHDOG=trigger"])
    with running(config, mode, tmp_path) as roost:
        record = roost.wait_state("trigger", "failed", timeout=20)
        assert record["last_exit"] == "watchdog", record
        # Aborted by SIGABRT at once, not after its keep-alives (a second of them).
        assert "trigger | last keep-alive" not in roost.output()


# Asks for 1.5 s more every 0.5 s, three seconds long, then is ready; on SIGTERM asks for
# 3 s more and takes 2 s to exit 0.
SLOW = """
import os, signal, socket, sys, time
address = "\\0" + os.environ["NOTIFY_SOCKET"][1:]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
def slow_stop(_signum, _frame):
    s.sendto(b"EXTEND_TIMEOUT_USEC=3000000", address)
    print("stopping slowly", flush=True)
    time.sleep(2)
    sys.exit(0)
signal.signal(signal.SIGTERM, slow_stop)
for _ in range(6):
    s.sendto(b"EXTEND_TIMEOUT_USEC=1500000", address)
    time.sleep(0.5)
s.sendto(b"READY=1", address)
print("ready", flush=True)
while True:
    time.sleep(60)
"""


@both_modes
def test_extend_timeout_keeps_a_slow_start_and_a_slow_stop_alive(tmp_path: Path,
                                                                   mode: str) -> None:
    config = ConfigDir(tmp_path / "conf")
    config.service("slow", type="notify", command=config.python("slow", SLOW),
                   start_timeout=1, stop_timeout=1, restart="never")
    with running(config, mode, tmp_path) as roost:
        began = time.monotonic()
        record = roost.wait_state("slow", "up", "failed", timeout=20)
        took = time.monotonic() - began
        print(f"start_timeout = 1, extended: up after {took:.2f}s")
        assert record["state"] == "up", record
        assert took > 1.5, took
        result = roost.cli("stop", "slow")
        assert result.returncode == 0, result.stderr
        record = roost.wait_state("slow", "down", timeout=20)
        roost.wait_output(r"slow \| stopping slowly")
        # Not killed at stop_timeout: it had asked for more and exited 0 in it.
        assert record["last_exit"] == "exited 0", record
