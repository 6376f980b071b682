"""Readiness: a newline on a notification fd, READY=1 on $NOTIFY_SOCKET from the real
systemd-notify, a start that never becomes ready, and notifications from anyone but
the service refused."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests import debs, support
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
    # systemd-notify runs as a child of the service's shell, not as its main process.
    config.service("notified", type="notify", environment=environment, notify_access="all",
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
    config.service("loading", type="notify", environment=environment, notify_access="all",
                   command=[config.script("silent.sh", SILENT_NOTIFY.format(notify=notify))],
                   start_timeout=1, restart="never")
    with running(config, mode, tmp_path) as roost:
        record = roost.wait_state("loading", "failed")
        assert record["reason"] == "not ready within 1s"
        assert record["status"] == "still loading"


# The service's main process says where its socket is, waits for GO to exist, then sends
# READY=1 itself (notify_access = "main", the default).
TARGET = """
import os, socket, sys, time
print("socket", os.environ["NOTIFY_SOCKET"], flush=True)
while not os.path.exists(sys.argv[1]):
    time.sleep(0.05)
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.sendto(b"READY=1\\nSTATUS=really ready", "\\0" + os.environ["NOTIFY_SOCKET"][1:])
while True:
    time.sleep(60)
"""

# Another service, of the same uid (root), sending for the target once its address is known.
IMPOSTOR = """
import os, socket, sys, time
while not os.path.exists(sys.argv[1]):
    time.sleep(0.05)
address = open(sys.argv[1]).read().strip()
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.sendto(b"READY=1\\nSTATUS=spoofed by a neighbour", "\\0" + address[1:])
print("sent", flush=True)
while True:
    time.sleep(60)
"""


def _send(address: str, data: bytes) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(data, "\0" + address[1:])


@both_modes
def test_only_the_service_itself_may_say_it_is_ready(tmp_path: Path, mode: str) -> None:
    # A root process outside every service, and a process of another service with the
    # same uid, each claim the target is ready: both are refused and counted; then the
    # target's own main process says so, and only that counts.
    go, leak = tmp_path / "go", tmp_path / "address"
    config = ConfigDir(tmp_path / "conf")
    config.service("target", type="notify", start_timeout=60,
                   command=[*config.python("target", TARGET), str(go)])
    config.service("impostor", command=[*config.python("impostor", IMPOSTOR), str(leak)])
    with running(config, mode, tmp_path) as roost:
        address = roost.wait_output(r"target \| socket (\S+)").group(1)
        _send(address, b"READY=1\nSTATUS=spoofed by root")
        leak.write_text(address)
        roost.wait_output(r"impostor \| sent")

        def taken_or_refused() -> bool:
            record = roost.status("target")
            return record["state"] != "starting" or record.get("notify_refused") == 2

        support.wait_for(taken_or_refused, timeout=10)
        record = roost.status("target")
        assert record["state"] == "starting", record
        assert record["status"] == "", record
        roost.wait_output(r"target: refused a notification from pid \d+: not the main process")
        go.touch()
        record = roost.wait_state("target", "up")
        assert record["status"] == "really ready"
        assert record["notify_refused"] == 2 and record["notify_malformed"] == 0


# The main process itself sends what is not a notification, then READY=1.
GARBLED = """
import os, socket, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
address = "\\0" + os.environ["NOTIFY_SOCKET"][1:]
for data in (b"READY=1\\0", b"READY=1\\n\\xff", b"READY=1\\n" + b"x" * 5000):
    s.sendto(data, address)
s.sendto(b"STATUS=after the garbage", address)
print("sent", flush=True)
while True:
    time.sleep(60)
"""


@both_modes
def test_a_datagram_that_is_not_a_notification_is_dropped_and_counted(
        tmp_path: Path, mode: str) -> None:
    # A NUL byte, bytes that are not UTF-8, a datagram over the size limit: none of them
    # may count as READY=1, even from the main process.
    config = ConfigDir(tmp_path / "conf")
    config.service("garbled", type="notify", start_timeout=60,
                   command=config.python("garbled", GARBLED))
    with running(config, mode, tmp_path) as roost:
        roost.wait_output(r"garbled \| sent")
        support.wait_for(lambda: roost.status("garbled")["status"] == "after the garbage",
                         timeout=10)
        record = roost.status("garbled")
        assert record["state"] == "starting", (record, roost.output())
        assert record["notify_malformed"] == 3 and record["notify_refused"] == 0, record
