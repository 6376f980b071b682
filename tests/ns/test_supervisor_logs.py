"""Service output: no line lost across restarts, size rotation, `roost log -n` and `-f`."""

from __future__ import annotations

import os
import re
import select
import subprocess
import time
from pathlib import Path

import pytest

from tests.ns.supervisor_kit import (
    ROOST,
    ConfigDir,
    both_modes,
    running,
)

# Each test is bounded well below the suite's timeout: a hang fails fast.
pytestmark = pytest.mark.timeout(120)

STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3} "

# Each instance numbers itself from a counter file, writes its lines as fast as it can,
# and crashes without a pause: whatever is still in the pipe must reach the log.
CRASHER = """
import os, sys
counter = sys.argv[1]
instance = int(open(counter).read()) + 1 if os.path.exists(counter) else 1
with open(counter, "w") as f:
    f.write(str(instance))
out = sys.stdout
for n in range(int(sys.argv[2])):
    out.write(f"{instance}:{n}\\n")
out.flush()
os._exit(3)
"""


@both_modes
def test_no_line_is_lost_across_restarts(tmp_path: Path, mode: str) -> None:
    config = ConfigDir(tmp_path / "conf")
    config.settings(log_dir="logs", log_console=False, log_max_bytes=64 << 20)
    lines = 3000
    config.service("crasher", command=[*config.python("crasher", CRASHER),
                                       str(tmp_path / "counter"), str(lines)],
                   restart_delay=0.02, restart_delay_max=0.05, restart_limit=3)
    with running(config, mode, tmp_path) as roost:
        roost.wait_state("crasher", "failed", timeout=30)
        log = config.path / "logs" / "crasher.log"
        expected = [f"{i}:{n}" for i in (1, 2, 3) for n in range(lines)]

        def complete() -> bool:
            return log.exists() and len(log.read_text().splitlines()) >= len(expected)

        from tests.support import wait_for
        wait_for(complete, timeout=10, what="every line in the log file")
        text = log.read_text().splitlines()
        assert all(re.match(STAMP + "(out|roost) ", line) for line in text)
        assert [line.split(" ", 2)[2] for line in text if line.split(" ")[1] == "out"] == expected
        # Where each new run began, roost's own line says how the one before it ended.
        assert [line.split(" ", 2)[2] for line in text if line.split(" ")[1] == "roost"] == [
            "-- crasher restarted: exited 3 --"] * 2
        starts = [n for n, line in enumerate(text) if line.split(" ")[1] == "roost"]
        assert text[starts[0] - 1].endswith(f"1:{lines - 1}")
        assert text[starts[0] + 1].endswith(" 2:0")
        result = roost.cli("log", "crasher", "-n", "3")
        assert result.returncode == 0, result.stderr
        assert [line.split(" ", 1)[1] for line in result.stdout.splitlines()] == [
            "3:2997", "3:2998", "3:2999"]


WRITER = """
import sys, time
for n in range(int(sys.argv[1])):
    print(f"line {n:04d}", flush=True)
while True:
    time.sleep(60)
"""


@both_modes
def test_log_files_rotate_at_the_size_keeping_the_count(tmp_path: Path, mode: str) -> None:
    config = ConfigDir(tmp_path / "conf")
    config.settings(log_dir="logs", log_console=False, log_max_bytes=2000, log_keep=2)
    config.service("writer", command=[*config.python("writer", WRITER), "300"])
    with running(config, mode, tmp_path) as roost:
        roost.wait_state("writer", "up")
        logs = config.path / "logs"
        from tests.support import wait_for
        wait_for(lambda: "line 0299" in (logs / "writer.log").read_text()
                 if (logs / "writer.log").exists() else False, timeout=10, what="line 299")
        names = sorted(p.name for p in logs.iterdir())
        assert names == ["writer.log", "writer.log.1", "writer.log.2"]
        numbers: list[int] = []
        for name in ("writer.log.2", "writer.log.1", "writer.log"):
            data = (logs / name).read_bytes()
            assert 0 < len(data) <= 2000, (name, len(data))
            for line in data.decode().splitlines():
                assert re.fullmatch(STAMP + r"out line \d{4}", line), line
                numbers.append(int(line[-4:]))
        # The newest lines, in order, none missing; the oldest rotated away.
        assert numbers == list(range(numbers[0], 300))
        assert numbers[0] > 0
        # Each full file was rotated just before it would have passed the size.
        line_size = len((logs / "writer.log.1").read_bytes().splitlines(keepends=True)[0])
        assert len((logs / "writer.log.1").read_bytes()) > 2000 - line_size
        # `roost log -n` gives the newest lines.
        result = roost.cli("log", "writer", "-n", "5")
        assert [line.split(" ", 1)[1] for line in result.stdout.splitlines()] == [
            f"line {n:04d}" for n in range(295, 300)]


TICKER = """
import sys, time
n = 0
while True:
    print(f"{sys.argv[1]} {n}", flush=True)
    n += 1
    time.sleep(0.05)
"""


def read_lines(proc: subprocess.Popen[bytes], count: int, timeout: float) -> list[str]:
    """Read `count` lines from a child's stdout, failing after `timeout` seconds."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    buffer = b""
    deadline = time.monotonic() + timeout
    while buffer.count(b"\n") < count:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"only {buffer!r} within {timeout}s")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            data = os.read(fd, 4096)
            if not data:
                raise AssertionError(f"follower ended: {buffer!r}")
            buffer += data
    return buffer.decode().splitlines()[:count]


@both_modes
def test_log_tail_and_follow(tmp_path: Path, mode: str) -> None:
    config = ConfigDir(tmp_path / "conf")
    ticker = config.python("ticker", TICKER)
    config.service("tick", command=[*ticker, "tick"])
    config.service("tock", command=[*ticker, "tock"])
    with running(config, mode, tmp_path) as roost:
        roost.wait_output(r"tock \| tock 5")
        roost.wait_output(r"tick \| tick 5")
        result = roost.cli("log", "tick", "-n", "3")
        assert result.returncode == 0, result.stderr
        tail = result.stdout.splitlines()
        assert len(tail) == 3
        numbers = [int(line.rsplit(" ", 1)[1]) for line in tail]
        assert numbers == list(range(numbers[0], numbers[0] + 3))
        assert all(re.match(STAMP + r"tick \d+$", line) for line in tail)
        # Several services: the last 4 of each, merged by time, each line named.
        result = roost.cli("log", "tick", "tock", "-n", "4")
        both = result.stdout.splitlines()
        assert len(both) == 8
        assert sorted(line.split(" ")[1] for line in both) == ["tick"] * 4 + ["tock"] * 4
        stamps = [line[:23] for line in both]
        assert stamps == sorted(stamps)  # oldest first (two lines may share a millisecond)
        assert all(re.match(STAMP + r"(tick \| tick|tock \| tock) \d+$", line) for line in both)

        follower = subprocess.Popen([*ROOST, "log", "-f", "-n", "1", "tick", "--control",
                                     roost.control], stdout=subprocess.PIPE,
                                    stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        try:
            got = read_lines(follower, 6, timeout=15)
            numbers = [int(line.rsplit(" ", 1)[1]) for line in got]
            # The last line, then each new one as it is written.
            assert numbers == list(range(numbers[0], numbers[0] + 6)), got
        finally:
            follower.kill()
            follower.wait(timeout=10)
        # The follower is gone; roost goes on, and a new follower works as well.
        follower = subprocess.Popen([*ROOST, "log", "-f", "-n", "0", "tock", "--control",
                                     roost.control], stdout=subprocess.PIPE,
                                    stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        try:
            assert all(" tock " in line for line in read_lines(follower, 2, timeout=15))
        finally:
            follower.kill()
            follower.wait(timeout=10)
        assert roost.status("tick")["state"] == "up"
        assert "error in" not in roost.output()


# Writes `quiet`'s 3 lines at once, `chatty` a line every 50 ms; then sleeps.
BURST = """
import sys, time
name, count, pause = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
for n in range(count):
    print(name, n, flush=True)
    time.sleep(pause)
time.sleep(600)
"""


def test_log_of_every_service_by_window_and_as_json(tmp_path: Path) -> None:
    import json

    config = ConfigDir(tmp_path / "conf")
    burst = config.python("burst", BURST)
    config.service("quiet", command=[*burst, "quiet", "3", "0"])
    config.service("chatty", command=[*burst, "chatty", "100", "0.05"])
    with running(config, "pid1", tmp_path) as roost:
        roost.wait_output(r"chatty \| chatty 99")
        # No service named: every service's last N, the quiet one's not pushed out.
        result = roost.cli("log", "-n", "5")
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert sorted(line.split(" ")[1] for line in lines) == ["chatty"] * 5 + ["quiet"] * 3
        assert [line.rsplit(" ", 1)[1] for line in lines if " quiet | " in line] == \
            ["0", "1", "2"]
        records = [json.loads(line) for line in roost.cli(
            "log", "-n", "1000", "--json", "chatty").stdout.splitlines()]
        assert [r["line"] for r in records] == [f"chatty {n}" for n in range(100)]
        # A window: the middle half of chatty's five seconds, by the times the records carry.
        start, end = records[25]["time"], records[74]["time"]
        middle = roost.cli("log", "-n", "1000", "--json", "chatty", "--since",
                           _local(start), "--until", _local(end + 1)).stdout.splitlines()
        got = [json.loads(line)["line"] for line in middle]
        # Local times are read to the second (the window's ends rounded outward): it holds
        # 25..74 and what shares their seconds, not all 100.
        assert "chatty 25" in got and "chatty 74" in got and len(got) < 100, got
        recent = roost.cli("log", "--since", "1d", "-n", "1000", "quiet").stdout
        assert len(recent.splitlines()) == 3
        none = roost.cli("log", "--since", "0s", "quiet")
        assert none.returncode == 0 and none.stdout == "", none
        bad = roost.cli("log", "--since", "soon")
        assert bad.returncode == 2 and "expected 30s, 10m, 2h, 1d" in bad.stderr, bad


def _local(when: float) -> str:
    """A UNIX time as `roost log --since` reads a local time, to the second (rounded out)."""
    import datetime

    return datetime.datetime.fromtimestamp(when).strftime("%Y-%m-%d %H:%M:%S")
