"""Readiness: a newline on a notification fd, READY=1 on $NOTIFY_SOCKET from the real
systemd-notify, and a start that never becomes ready."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import debs
from tests.ns.supervisor_kit import (
    ConfigDir,
    both_modes,
    running,
)

# Each test is bounded well below the suite's timeout: a hang fails fast.
pytestmark = pytest.mark.timeout(120)

SLOW_READY = """
import os, sys, time
time.sleep(float(sys.argv[1]))
print("ready now", flush=True)
os.write(3, b"ready\\n")
while True:
    time.sleep(60)
"""

NEVER_READY = """
import os, sys, time
if sys.argv[1] == "close":
    os.close(3)  # EOF without a newline is not readiness
while True:
    time.sleep(60)
"""


@both_modes
def test_fd_readiness(tmp_path: Path, mode: str) -> None:
    config = ConfigDir(tmp_path / "conf")
    config.service("slow", command=[*config.python("slow", SLOW_READY), "1.5"], ready="fd:3")
    config.service("after", command=["sleep", "600"], requires=["slow"])
    with running(config, mode, tmp_path) as roost:
        record = roost.status("slow")
        assert record["state"] == "starting" and record["pid"]
        assert roost.status("after")["reason"] == "waiting for slow"
        roost.wait_state("slow", "up")
        roost.wait_state("after", "up")
        out = roost.output()
        assert out.index("slow | ready now") < out.index("after: starting")


@pytest.mark.parametrize("how", ["silent", "close"])
@both_modes
def test_never_ready_fails_at_the_start_timeout(tmp_path: Path, mode: str, how: str) -> None:
    config = ConfigDir(tmp_path / "conf")
    config.service("mute", command=[*config.python("mute", NEVER_READY), how], ready="fd:3",
                   start_timeout=0.5, restart="never")
    config.service("after", command=["sleep", "600"], requires=["mute"])
    with running(config, mode, tmp_path) as roost:
        record = roost.wait_state("mute", "failed")
        assert record["reason"] == "not ready within 0.5s"
        assert record["last_exit"] == "not ready within 0.5s"
        assert record["pid"] is None
        after = roost.wait_state("after", "down")
        assert after["reason"] == "requirement mute failed"


NOTIFY = """\
#!/bin/sh
echo "socket $NOTIFY_SOCKET"
sleep 1
{notify} --ready --status="serving requests"
exec sleep 600
"""


def systemd_notify() -> tuple[str, dict[str, str]]:
    """The real systemd-notify (unpacked or the host's) and the environment it needs."""
    path = debs.program("systemd-notify")
    if path is None:
        pytest.skip("SKIPPED: systemd-notify is neither unpacked nor installed (python -m "
                    "tests.debs unpacks Debian's systemd package); type = \"notify\" is untested "
                    "against the real sender")
    return path, debs.environment(path)


@both_modes
def test_notify_with_the_real_systemd_notify(tmp_path: Path, mode: str) -> None:
    notify, environment = systemd_notify()
    config = ConfigDir(tmp_path / "conf")
    config.service("notified", type="notify", environment=environment,
                   command=[config.script("notify.sh", NOTIFY.format(notify=notify))])
    config.service("after", command=["sleep", "600"], requires=["notified"])
    with running(config, mode, tmp_path) as roost:
        assert roost.status("notified")["state"] == "starting"
        record = roost.wait_state("notified", "up")
        assert record["status"] == "serving requests"
        roost.wait_state("after", "up")
        roost.wait_output(r"notified \| socket @roost/notify/\d+/notified/[0-9a-f]+$")
        # The socket belongs to the service: it is the same after a restart.
        address = roost.wait_output(r"notified \| socket (\S+)").group(1)
        result = roost.cli("restart", "notified")
        assert result.returncode == 0, result.stderr
        assert roost.output().count(f"notified | socket {address}") == 2


SILENT_NOTIFY = """\
#!/bin/sh
{notify} --status="still loading"
exec sleep 600
"""


@both_modes
def test_notify_without_ready_times_out(tmp_path: Path, mode: str) -> None:
    notify, environment = systemd_notify()
    config = ConfigDir(tmp_path / "conf")
    config.service("loading", type="notify", environment=environment,
                   command=[config.script("silent.sh", SILENT_NOTIFY.format(notify=notify))],
                   start_timeout=1, restart="never")
    with running(config, mode, tmp_path) as roost:
        record = roost.wait_state("loading", "failed")
        assert record["reason"] == "not ready within 1s"
        assert record["status"] == "still loading"
