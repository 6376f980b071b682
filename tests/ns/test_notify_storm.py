"""A notify storm: a hundred notify services, each held at a shared lock, all sending
READY=1 (with the real systemd-notify, and its barrier) the moment the lock is let go.
Every one comes up and no datagram is lost, dropped or refused."""

from __future__ import annotations

import fcntl
import time
from pathlib import Path

import pytest

from tests import support
from tests.ns.supervisor_kit import ConfigDir, both_modes, running
from tests.ns.test_supervisor_readiness import systemd_notify

pytestmark = pytest.mark.timeout(240)

COUNT = 100

STORM = """\
#!/bin/sh
flock -s "$1" true
{notify} --ready --status="storm $2"
exec sleep 600
"""


@both_modes
def test_a_hundred_notify_services_ready_at_once(tmp_path: Path, mode: str) -> None:
    notify, environment = systemd_notify()
    lock = tmp_path / "lock"
    config = ConfigDir(tmp_path / "conf")
    script = config.script("storm.sh", STORM.format(notify=notify))
    names = [f"n{i:03d}" for i in range(COUNT)]
    for name in names:
        config.service(name, type="notify", environment=environment, notify_access="all",
                       command=[script, str(lock), name], start_timeout=180)
    with lock.open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with running(config, mode, tmp_path) as roost:
            def records() -> list[dict[str, object]]:
                return [r for r in roost.call("status") if r["name"] in names]

            # All spawned and waiting at the lock before it is let go.
            support.wait_for(lambda: all(r["state"] == "starting" and r["pid"]
                                         for r in records()), timeout=60)
            time.sleep(0.5)
            began = time.monotonic()
            fcntl.flock(held, fcntl.LOCK_UN)
            support.wait_for(lambda: all(r["state"] == "up" for r in records()),
                             timeout=120, interval=0.02)
            took = time.monotonic() - began
            final = records()
            malformed = sum(int(str(r["notify_malformed"])) for r in final)
            refused = sum(int(str(r["notify_refused"])) for r in final)
            print(f"{COUNT} notify services up {took:.3f}s after READY=1 was let go "
                  f"({mode}); datagrams dropped: {malformed}, refused: {refused}")
            assert (malformed, refused) == (0, 0), [r for r in final
                                                    if r["notify_malformed"] or r["notify_refused"]]
            assert {r["status"] for r in final} == {f"storm {name}" for name in names}
