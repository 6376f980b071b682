"""A full log disk loses lines, but never silently: they are counted in `roost status`, the
file says how many once space returns, and the service is never held up by it."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.ns.supervisor_kit import ROOST, ConfigDir, lines_of
from tests.support import Namespace, require_unshare, unique_control, wait_for

pytestmark = pytest.mark.timeout(120)

# Numbered lines at a steady pace; the longest a single write took goes to a file
# outside the full disk.
WRITER = """
import os, sys, time
total, report = int(sys.argv[1]), sys.argv[2]
worst = 0.0
for n in range(total):
    started = time.monotonic()
    print(f"line {n:06d} " + "y" * 80, flush=True)
    worst = max(worst, time.monotonic() - started)
    if n % 100 == 99:
        with open(report + ".new", "w") as f:
            f.write(f"{n + 1} {worst:.6f}")
        os.replace(report + ".new", report)
        time.sleep(0.05)
while True:
    time.sleep(60)
"""

TOTAL = 8000  # about 800 KB: what comes after the filler goes fits in what it frees


def test_lines_a_full_disk_lost_are_counted_and_noted(tmp_path: Path) -> None:
    require_unshare()
    config = ConfigDir(tmp_path / "conf")
    logs = tmp_path / "logs"
    logs.mkdir()
    report = tmp_path / "writer-report"
    config.settings(log_dir=str(logs), log_console=False, log_max_bytes=64 << 20, log_keep=1)
    config.service("writer", command=[*config.python("writer", WRITER), str(TOTAL), str(report)])
    control = unique_control()
    # A 1 MiB tmpfs over the log directory, in roost's own mount namespace only; most of it
    # taken by a filler before roost starts.
    script = ('mount -t tmpfs -o size=1m,mode=0700 roost-test-logs "$1" && '
              'head -c 786432 /dev/zero > "$1/filler" && shift && exec "$@"')
    out = open(tmp_path / "roost.out", "wb")  # noqa: SIM115 - closed below
    ns = Namespace(["sh", "-c", script, "sh", str(logs), *ROOST, "up", "-c", str(config.path),
                    "--control", control], stdout=out, stderr=subprocess.STDOUT,
                   stdin=subprocess.DEVNULL)
    try:
        from roost.control.client import Client, NotRunning

        def status() -> dict[str, object]:
            with Client(control, timeout=10) as client:
                (record,) = client.call("status", services=["writer"])
            return record  # type: ignore[no-any-return]

        def answers() -> bool:
            assert ns.proc.poll() is None, (tmp_path / "roost.out").read_text()
            try:
                status()
            except NotRunning:
                return False
            return True

        wait_for(answers, timeout=15, what="roost to answer")
        inside = Path(f"/proc/{ns.init_pid}/root") / str(logs).lstrip("/")
        wait_for(lambda: (status()["log_dropped"] or 0) > 1000, timeout=30,
                 what="lines dropped on the full disk")
        assert (tmp_path / "roost.out").read_text().count("lines dropped (ENOSPC)") == 1
        # Space comes back; the next line goes into the file after the note.
        (inside / "filler").unlink()
        wait_for(lambda: report.exists() and int(report.read_text().split()[0]) == TOTAL,
                 timeout=60, what="the writer to finish")

        def written() -> list[str]:
            return lines_of(inside / "writer.log")

        wait_for(lambda: any(f"line {TOTAL - 1:06d}" in line for line in written()),
                 timeout=10, what="the last line in the file")
        dropped = status()["log_dropped"]
        assert isinstance(dropped, int)
        text = written()
        notes = [line for line in text if line.split(" ")[1] == "roost"]
        assert len(notes) == 1, notes
        match = re.search(r" roost (\d+) lines dropped \(ENOSPC\)$", notes[0])
        assert match, notes
        assert int(match.group(1)) == dropped
        numbers = [int(line.split(" ")[3]) for line in text
                   if " line " in line and line.endswith("y" * 80)]
        # Nothing lost without being counted: what the file has and what it lost is all.
        assert len(numbers) + dropped == TOTAL, (len(numbers), dropped)
        assert numbers == sorted(numbers)
        assert numbers[-1] == TOTAL - 1
        worst = float(report.read_text().split()[1])
        print(f"{dropped} lines dropped and noted; the writer's slowest line took "
              f"{worst * 1e3:.1f} ms")
        assert worst < 1.0
        result = subprocess.run([*ROOST, "status", "--control", control], capture_output=True,
                                text=True, timeout=10, stdin=subprocess.DEVNULL)
        assert f"writer: {dropped} lines never reached its log file" in result.stdout, result
    finally:
        ns.kill()
        out.close()
    assert not os.path.ismount(logs)  # the tmpfs lived in roost's mount namespace only
