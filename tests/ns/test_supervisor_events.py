"""`roost events`: each service's state now, then every change as it happens.

Any user may follow (it streams what `status` shows): uid 65534 runs it here, while a
service crashes and is restarted and another is stopped by root; the stream ends when
roost does.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.ns.supervisor_kit import ConfigDir, both_modes, running
from tests.support import ROOST

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("unshare_required")]


@both_modes
def test_any_user_follows_every_state_change(tmp_path: Path, mode: str) -> None:
    config = ConfigDir(tmp_path / "conf")
    config.service("keep", command=["sleep", "600"])
    config.service("crash", command=["sh", "-c", "sleep 0.3; exit 3"],
                   autostart=False, restart="on-failure", restart_delay=0.1, restart_limit=2)
    with running(config, mode, tmp_path) as roost:
        roost.wait_state("keep", "up", timeout=30)
        follower = subprocess.Popen(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *ROOST, "events",
             "--json", "--control", roost.control],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert follower.stdout is not None
            first = [json.loads(follower.stdout.readline()) for _ in range(2)]
            assert {(r["service"], r["state"]) for r in first} == {("keep", "up"),
                                                                    ("crash", "down")}
            assert roost.cli("start", "crash", "--no-wait").returncode == 0
            seen: list[tuple[str, str]] = []
            while ("crash", "failed") not in seen:
                line = follower.stdout.readline()
                assert line, f"the stream ended early: {seen} {follower.stderr}"
                record = json.loads(line)
                seen.append((record["service"], record["state"]))
            crash = [state for name, state in seen if name == "crash"]
            # restart_limit = 2: two starts, then given up; every step, in order.
            assert crash == ["starting", "up", "backoff", "starting", "up", "failed"], crash
            assert roost.cli("stop", "keep").returncode == 0
            after = [json.loads(follower.stdout.readline()) for _ in range(2)]
            assert [(r["service"], r["state"], r["reason"]) for r in after] == [
                ("keep", "stopping", "stopped"), ("keep", "down", "stopped")], after
            roost.signal(15)
            assert follower.wait(timeout=30) == 0
        finally:
            if follower.poll() is None:
                follower.kill()
            follower.wait(timeout=10)


def test_events_name_no_such_service(tmp_path: Path) -> None:
    config = ConfigDir(tmp_path / "conf")
    config.service("keep", command=["sleep", "600"])
    with running(config, "pid1", tmp_path) as roost:
        ran = roost.cli("events", "nope", timeout=30)
        assert ran.returncode != 0 and "nope" in ran.stderr, ran
