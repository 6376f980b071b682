"""sd_notify beyond READY=1, from the real systemd-notify: MAINPID= (the main process handed
to another process of the service), RELOADING=1 and STOPPING=1 shown as the phase, ERRNO=
and EXIT_STATUS= shown with the exit, and the BARRIER=1 every systemd-notify sends, whose
descriptor roost closes: the sender never waits out its barrier timeout."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests import support
from tests.ns.supervisor_kit import ConfigDir, both_modes, running
from tests.ns.test_supervisor_readiness import systemd_notify

pytestmark = pytest.mark.timeout(120)

# The shell starts the daemon-to-be, names it the main process, then reports its phases as
# the test asks; each systemd-notify is timed (a barrier not answered takes 5 s).
HAND_OVER = """\
#!/bin/sh
N={notify}
step() {{ while [ ! -e "{dir}/$1" ]; do sleep 0.02; done; }}
took() {{ echo "took $(( $(date +%s%N) / 1000000 - $1 ))ms"; }}
sleep 600 &
echo "daemon $!"
t=$(( $(date +%s%N) / 1000000 ))
$N --pid=$! --ready --status="handed over"
took $t
step reload
$N RELOADING=1 --status=reloading
step reloaded
$N --ready --status=reloaded
step stopping
$N STOPPING=1 ERRNO=5 EXIT_STATUS=7
echo "shell done"
"""


@both_modes
def test_systemd_notify_mainpid_phases_errno(tmp_path: Path, mode: str) -> None:
    notify, environment = systemd_notify()
    steps = tmp_path / "steps"
    steps.mkdir()
    config = ConfigDir(tmp_path / "conf")
    script = config.script("hand-over.sh", HAND_OVER.format(notify=notify, dir=steps))
    config.service("daemon", type="notify", environment=environment, notify_access="all",
                   command=[script], restart="never")
    with running(config, mode, tmp_path) as roost:
        daemon = int(roost.wait_output(r"daemon \| daemon (\d+)").group(1))
        record = roost.wait_state("daemon", "up")
        assert record["pid"] == daemon, record  # MAINPID= taken: the sleep, not the shell
        assert record["status"] == "handed over" and record["phase"] is None
        took = int(roost.wait_output(r"daemon \| took (\d+)ms").group(1))
        print(f"systemd-notify --pid --ready (with its barrier) took {took} ms")
        assert took < 4000, "systemd-notify waited out its barrier: its fd was kept"
        (steps / "reload").touch()
        support.wait_for(lambda: roost.status("daemon")["status"] == "reloading", timeout=10)
        record = roost.status("daemon")
        assert record["phase"] == "reloading" and record["state"] == "up", record
        (steps / "reloaded").touch()
        support.wait_for(lambda: roost.status("daemon")["status"] == "reloaded", timeout=10)
        assert roost.status("daemon")["phase"] is None
        (steps / "stopping").touch()
        roost.wait_output(r"daemon \| shell done")
        support.wait_for(lambda: roost.status("daemon")["phase"] == "stopping", timeout=10)
        # The shell, the main process no more, has exited: that is not the service's end.
        time.sleep(0.3)
        record = roost.status("daemon")
        assert (record["state"], record["pid"]) == ("up", daemon), record
        result = roost.cli("stop", "daemon")
        assert result.returncode == 0, result.stderr
        record = roost.wait_state("daemon", "down")
        assert record["last_exit"] == ("killed by SIGTERM (ERRNO=5 (EIO: Input/output error), "
                                       "EXIT_STATUS=7)"), record
        assert record["phase"] is None
        # Every datagram was a notification from the service: none dropped, none refused.
        assert (record["notify_malformed"], record["notify_refused"]) == (0, 0), record


# Sent from the shell, the main process (systemd-notify speaks for its parent), naming PID 1.
MAINPID_OUTSIDER = """\
#!/bin/sh
{notify} --ready MAINPID=1
echo "sent"
exec sleep 600
"""


@both_modes
def test_mainpid_of_a_process_outside_the_service_is_refused(tmp_path: Path, mode: str) -> None:
    notify, environment = systemd_notify()
    config = ConfigDir(tmp_path / "conf")
    script = config.script("outsider.sh", MAINPID_OUTSIDER.format(notify=notify))
    config.service("svc", type="notify", environment=environment, notify_access="all",
                   command=[script])
    with running(config, mode, tmp_path) as roost:
        roost.wait_output(r"svc \| sent")
        record = roost.wait_state("svc", "up")
        roost.wait_output(r"svc: MAINPID=1 refused: not a process of svc")
        shell = record["pid"]
        assert shell != 1
        # Still the shell (now sleep, by exec), whose exit is the service's.
        result = roost.cli("stop", "svc")
        assert result.returncode == 0, result.stderr
        assert roost.wait_state("svc", "down")["last_exit"] == "killed by SIGTERM"
