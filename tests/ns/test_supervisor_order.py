"""Dependency order, observed by the services themselves: start after what they require is
ready, after what they want has settled; stop in the reverse order."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.ns.supervisor_kit import (
    ConfigDir,
    both_modes,
    lines_of,
    running,
)
from tests.support import wait_for

# Each test is bounded well below the suite's timeout: a hang fails fast.
pytestmark = pytest.mark.timeout(120)

# Each service appends "<event> <name>" to a shared file: start, ready, done, stop.
SERVICE = r'''
import os, signal, sys, time

name, events, delay, role = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]

def log(what):
    fd = os.open(events, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(fd, f"{what} {name}\n".encode())
    os.close(fd)

def term(*_):
    log("stop")
    os._exit(0)

signal.signal(signal.SIGTERM, term)
log("start")
time.sleep(delay)
if role == "fd":
    log("ready")
    os.write(3, b"\n")
    os.close(3)
elif role == "oneshot":
    log("done")
    sys.exit(0)
while True:
    signal.pause()
'''


def build(config: ConfigDir, events: Path) -> None:
    def command(name: str, delay: float, role: str) -> list[str]:
        return [*config.python("svc", SERVICE), name, str(events), str(delay), role]

    config.service("db", command=command("db", 0.6, "fd"), ready="fd:3", stop_timeout=5)
    config.service("migrate", type="oneshot", command=command("migrate", 0.2, "oneshot"),
                   requires=["db"])
    config.service("web", command=command("web", 0.1, "fd"), ready="fd:3",
                   requires=["db", "migrate"])
    config.service("cache", command=command("cache", 0.8, "fd"), ready="fd:3")
    config.service("worker", command=command("worker", 0, "exec"), wants=["web", "cache"])
    config.service("lone", command=command("lone", 0, "exec"))


def before(events: list[str], first: str, second: str) -> None:
    assert first in events and second in events, (first, second, events)
    assert events.index(first) < events.index(second), f"{first} after {second}: {events}"


@both_modes
def test_start_order_and_reverse_stop(tmp_path: Path, mode: str) -> None:
    config = ConfigDir(tmp_path / "conf")
    events_file = tmp_path / "events"
    build(config, events_file)
    with running(config, mode, tmp_path) as roost:
        roost.wait_state("worker", "up")
        roost.wait_state("migrate", "done")
        # A service is up at its exec: give its interpreter the moment it needs to say so.
        wait_for(lambda: {"start worker", "start lone"} <= set(lines_of(events_file)),
                 timeout=10, what="every service to report its start")
        events = lines_of(events_file)
        # Requires: started only once the requirement is ready (or a oneshot is done).
        before(events, "ready db", "start migrate")
        before(events, "done migrate", "start web")
        # Wants: started only once what it wants has settled (here: become ready).
        before(events, "ready web", "start worker")
        before(events, "ready cache", "start worker")
        # Nothing holds back a service without dependencies, or the first layer.
        before(events, "start lone", "ready db")
        before(events, "start cache", "ready db")
        statuses = roost.call("status")
        assert {r["name"]: r["state"] for r in statuses} == {
            "cache": "up", "db": "up", "lone": "up", "migrate": "done", "web": "up",
            "worker": "up"}

        roost.signal(signal.SIGTERM)
        assert roost.wait_exit(30) == 0
        events = lines_of(events_file)
        stops = [e for e in events if e.startswith("stop ")]
        assert sorted(stops) == ["stop cache", "stop db", "stop lone", "stop web",
                                 "stop worker"]
        before(events, "stop worker", "stop web")
        before(events, "stop web", "stop db")
        before(events, "stop worker", "stop cache")
        out = roost.output()
        assert "SIGTERM received: stopping all services" in out
        assert "all services stopped" in out


@both_modes
def test_stop_and_start_follow_requirements(tmp_path: Path, mode: str) -> None:
    config = ConfigDir(tmp_path / "conf")
    events_file = tmp_path / "events"
    build(config, events_file)
    with running(config, mode, tmp_path) as roost:
        roost.wait_state("worker", "up")
        worker_pid = roost.status("worker")["pid"]
        events_file.write_text("")
        # Stopping db stops what requires it first; a service that only wants web stays.
        result = roost.cli("stop", "db")
        assert result.returncode == 0, result.stderr
        events = lines_of(events_file)
        before(events, "stop web", "stop db")
        assert "stop worker" not in events
        assert roost.status("web")["state"] == "down"
        assert roost.status("migrate")["state"] == "down"
        assert roost.status("worker")["pid"] == worker_pid

        # Starting web starts what it requires first: db, then migrate again (it requires
        # db, so stopping db took it down too).
        events_file.write_text("")
        result = roost.cli("start", "web")
        assert result.returncode == 0, result.stderr
        wait_for(lambda: "ready web" in lines_of(events_file), timeout=10, what="web")
        events = lines_of(events_file)
        before(events, "ready db", "start migrate")
        before(events, "done migrate", "start web")
        assert roost.status("migrate")["state"] == "done"
        assert roost.status("worker")["pid"] == worker_pid

        # A restart stops what requires it first, starts it after, and answers only then.
        old = {name: roost.status(name)["pid"] for name in ("db", "web")}
        events_file.write_text("")
        result = roost.cli("restart", "db")
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines()[1].split()[:2] == ["db", "up"]
        for name in ("db", "web"):
            record = roost.wait_state(name, "up")
            assert record["pid"] != old[name]
        wait_for(lambda: "ready web" in lines_of(events_file), timeout=10, what="web")
        events = lines_of(events_file)
        before(events, "stop web", "stop db")
        before(events, "stop db", "start db")
        before(events, "ready db", "start web")


FAIL = "import sys; sys.exit(4)"


@both_modes
def test_a_failed_requirement_holds_requirers_but_not_wanters(tmp_path: Path, mode: str) -> None:
    config = ConfigDir(tmp_path / "conf")
    # It fails before it is ready: nothing that requires it ever starts.
    config.service("db", command=config.python("fail", FAIL), restart="never", ready="fd:3")
    config.service("web", command=["sleep", "60"], requires=["db"])
    config.service("api", command=["sleep", "60"], requires=["web"])
    # Wants are weak: a wanted service that cannot start holds nothing back.
    config.service("worker", command=["sleep", "60"], wants=["web", "api"])
    with running(config, mode, tmp_path) as roost:
        db = roost.wait_state("db", "failed")
        assert db["reason"] == "exited 4"
        worker = roost.wait_state("worker", "up")
        assert worker["pid"]
        web = roost.status("web")
        assert (web["state"], web["reason"], web["pid"]) == ("down", "requirement db failed",
                                                             None)
        api = roost.status("api")
        assert (api["state"], api["pid"]) == ("down", None)
        # `roost start` on the requirer retries the failed requirement too; it fails again.
        result = roost.cli("start", "api", "--timeout", "10")
        assert result.returncode == 1
        assert roost.status("db")["state"] == "failed"
