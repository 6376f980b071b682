"""A service that floods its output delays neither another service's lines nor a control
reply by more than a reactor turn."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import pytest

from tests.ns.supervisor_kit import ConfigDir, both_modes, lines_of, running
from tests.support import wait_for

pytestmark = pytest.mark.timeout(120)

CANARY = """
import sys, time
n = 0
while True:
    print(f"canary {n} {time.time():.6f}", flush=True)
    n += 1
    time.sleep(0.1)
"""


def arrival(line: str) -> float:
    """When roost stamped a log file line (local time, milliseconds)."""
    stamp = line.split(" ", 1)[0]
    whole, millis = stamp.split(".")
    return time.mktime(time.strptime(whole, "%Y-%m-%dT%H:%M:%S")) + int(millis) / 1000


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


@both_modes
def test_a_flood_does_not_delay_other_lines_or_control(tmp_path: Path, mode: str) -> None:
    config = ConfigDir(tmp_path / "conf")
    config.settings(log_dir="logs", log_console=False, log_max_bytes=8 << 20, log_keep=1)
    config.service("flood", command=["seq", "1", "1000000000"])
    config.service("canary", command=config.python("canary", CANARY))
    with running(config, mode, tmp_path) as roost:
        roost.wait_state("flood", "up")
        roost.wait_state("canary", "up")
        flood_log = config.path / "logs" / "flood.log"
        wait_for(lambda: flood_log.exists() and flood_log.stat().st_size > 1 << 20,
                 timeout=20, what="the flood to be flowing")
        pings: list[float] = []
        until = time.monotonic() + 8
        while time.monotonic() < until:
            started = time.monotonic()
            roost.call("ping")
            pings.append(time.monotonic() - started)
            time.sleep(0.02)
        assert roost.status("flood")["state"] == "up"
        lines = lines_of(config.path / "logs" / "canary.log")
    delays = []
    numbers = []
    for line in lines:
        _, stream, _, number, written = line.split(" ")
        assert stream == "out", line
        numbers.append(int(number))
        # The clock's millisecond stamp can be up to 1 ms early.
        delays.append(max(0.0, arrival(line) - float(written)))
    assert len(numbers) > 50, lines[-5:]
    assert numbers == list(range(len(numbers))), "canary lines lost"
    print(f"canary delay p50 {statistics.median(delays) * 1e3:.1f} ms, "
          f"p99 {percentile(delays, 0.99) * 1e3:.1f} ms, max {max(delays) * 1e3:.1f} ms; "
          f"ping p50 {statistics.median(pings) * 1e3:.1f} ms, "
          f"p99 {percentile(pings, 0.99) * 1e3:.1f} ms ({len(pings)} pings)")
    assert percentile(delays, 0.99) < 1.0
    assert percentile(pings, 0.99) < 1.0
