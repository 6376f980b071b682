"""The tracker over its means: the fallback choice, waits, the connector means, orphans."""

from __future__ import annotations

import ast
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from roost.core.model import ServiceConfig
from roost.kernel import proc
from roost.kernel.loop import Loop
from roost.kernel.proc import ProcStat
from roost.tracking import LINEAGE_PINS, MEANS, Tracker, cgroup, connector, means
from roost.tracking import tracker as tracker_module
from roost.tracking.connector import EXIT, FORK, ConnectorMeans, Event
from roost.tracking.lineage import LineageMeans
from roost.tracking.orphans import Orphans

# Made-up PIDs far above any this machine hands out.
P = 4_000_000


def config(name: str) -> ServiceConfig:
    return ServiceConfig(name, f"/nonexistent/{name}.toml", [f"/bin/{name}"])


def st(pid: int, ppid: int, start: int = 1, state: str = "S", comm: str = "") -> ProcStat:
    return ProcStat(pid, comm or f"p{pid}", state, ppid, pid, pid, start)


@pytest.fixture(autouse=True)
def no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ROOST_CGROUP", raising=False)
    monkeypatch.delenv("ROOST_TRACKING", raising=False)


class FakeConnector:
    """A proc connector whose events the test queues; its fd is readable while it has any."""

    def __init__(self) -> None:
        self.queue: list[Event] = []
        self.lost = False
        self.closed = False
        self._r, self._w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def push(self, *events: Event) -> None:
        self.queue.extend(events)
        os.write(self._w, b"x")

    def fileno(self) -> int:
        return self._r

    def read(self) -> tuple[list[Event], bool]:
        try:
            os.read(self._r, 4096)
        except BlockingIOError:
            pass
        events, self.queue = self.queue, []
        lost, self.lost = self.lost, False
        return events, lost

    def close(self) -> None:
        self.closed = True
        os.close(self._r)
        os.close(self._w)


def run_loop(loop: Loop, until: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, "timed out"
        loop.run_once(0.05)


# -- the choice of means ------------------------------------------------------------


def test_a_service_whose_cgroup_cannot_be_made_falls_back(monkeypatch: pytest.MonkeyPatch,
                                                          tmp_path: Path) -> None:
    base = tmp_path / "missing" / "roost"  # its parent does not exist: no mkdir below it
    tree = cgroup.Tree(str(base), created=False)
    monkeypatch.setattr(cgroup.Tree, "detect", classmethod(lambda cls, c, p: (tree, "")))
    monkeypatch.setattr(connector.Connector, "probe", classmethod(lambda cls: (None, "test")))
    tracker = Tracker(Loop(), pid1=False)
    assert tracker.default == "cgroup"
    assert tracker.describe() == f"cgroup ({base})"
    assert tracker.placement(config("web")) is None
    assert tracker.means_for("web") == "lineage"
    assert tracker.cgroup_of("web") is None
    assert "no proc-connector tracking: test" in tracker.notes
    # Everyone else keeps the default.
    assert tracker.means_for("api") == "cgroup"
    assert tracker.cgroup_of("api") == str(base / "api.service")
    tracker.forget("web")
    assert tracker.means_for("web") == "cgroup"
    tracker.close()


def test_a_forced_means_that_is_not_available_is_noted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connector.Connector, "probe", classmethod(lambda cls: (None, "test")))
    tracker = Tracker(Loop(), means="proc-connector", cgroup="off")
    assert tracker.default == "lineage"
    assert "proc-connector tracking was asked for but is not available here" in tracker.notes
    tracker.close()


def test_the_tracker_names_a_means_only_where_it_chooses_one() -> None:
    # Everything else is asked of the service's means, never decided by its name.
    source = ast.parse(Path(tracker_module.__file__).read_text())
    named = []
    for node in ast.walk(source):
        if isinstance(node, ast.FunctionDef) and node.name != "__init__":
            for inner in ast.walk(node):
                if isinstance(inner, ast.Name) and inner.id in ("CGROUP", "CONNECTOR",
                                                                 "LINEAGE"):
                    named.append(f"{node.name}: {inner.id}")
                if isinstance(inner, ast.Constant) and inner.value in MEANS:
                    named.append(f"{node.name}: {inner.value!r}")
    assert named == []


# -- waits --------------------------------------------------------------------------


def test_a_wait_on_an_empty_service_fires_from_the_loop_never_at_once() -> None:
    loop = Loop()
    tracker = Tracker(loop, means="lineage", cgroup="off")
    fired: list[str] = []
    tracker.when_empty("web", lambda: fired.append("web"))
    assert fired == []
    run_loop(loop, lambda: fired)
    assert fired == ["web"]
    tracker.close()


def test_a_lineage_wait_pins_at_most_so_many_members_and_closes_the_rest(
        monkeypatch: pytest.MonkeyPatch) -> None:
    loop = Loop()
    floor = LineageMeans(loop, os.getpid(), came_home=lambda born: False)
    pipes = [os.pipe() for _ in range(LINEAGE_PINS + 6)]
    monkeypatch.setattr(floor, "pins", lambda name: [(P + i, r) for i, (r, _w) in
                                                     enumerate(pipes)])
    wait = means.Wait(lambda: None)
    floor.rearm("web", wait, lambda: None)
    assert wait.fds == [r for r, _w in pipes[:LINEAGE_PINS]]
    for r, _w in pipes[LINEAGE_PINS:]:
        with pytest.raises(OSError):
            os.fstat(r)
    wait.release(loop)
    assert wait.fds == []
    for r, w in pipes:
        with pytest.raises(OSError):
            os.fstat(r)
        os.close(w)


def test_the_lineage_scans_a_table_given_twice_in_one_turn_once() -> None:
    loop = Loop()
    floor = LineageMeans(loop, os.getpid(), came_home=lambda born: False)
    floor.take("web")
    scans: list[object] = []
    real = floor.lineage.scan

    def counting(table: dict[int, ProcStat] | None = None) -> dict[int, str]:
        scans.append(table)
        return real(table)

    floor.lineage.scan = counting
    snapshot = {P: st(P, 1)}
    assert floor.service_of(P, snapshot) is None
    assert floor.pids("web", snapshot) == []
    assert len(scans) == 1
    assert floor.pids("web", dict(snapshot)) == []  # another table: scanned
    assert len(scans) == 2
    loop.run_once(0)  # a new turn: scanned again
    assert floor.service_of(P, snapshot) is None
    assert len(scans) == 3


def test_the_floor_does_not_scan_for_an_owner_while_it_tracks_no_service() -> None:
    floor = LineageMeans(Loop(), os.getpid(), came_home=lambda born: False)
    floor.lineage.scan = None  # a scan would fail the test
    assert floor.service_of(os.getpid()) is None


# -- the connector means ------------------------------------------------------------


def test_the_connector_means_reports_the_last_exit_and_every_member_leaving() -> None:
    loop = Loop()
    fake = FakeConnector()
    me = os.getpid()
    emptied: list[str] = []
    left: list[None] = []
    conn = ConnectorMeans(loop, fake, me, emptied=emptied.append,
                          left=lambda: left.append(None))
    conn.take("web")
    fake.push((FORK, me, P))
    conn.started("web", P, None, forking=False)
    assert conn.pids("web") == [P]
    fake.push((FORK, P, P + 1), (EXIT, P, 0))
    assert conn.holds("web", P + 1)
    assert not conn.holds("web", P)
    assert emptied == []
    assert len(left) == 1
    fake.push((EXIT, P + 1, 0))
    run_loop(loop, lambda: emptied)  # read when its fd is readable
    assert emptied == ["web"]
    assert len(left) == 2
    conn.close()
    assert fake.closed


def test_lost_events_rebuild_the_map_and_report_what_emptied(
        capfd: pytest.CaptureFixture[str]) -> None:
    loop = Loop()
    fake = FakeConnector()
    me = os.getpid()
    emptied: list[str] = []
    conn = ConnectorMeans(loop, fake, me, emptied=emptied.append,
                          left=lambda: None)
    conn.take("web")
    fake.push((FORK, me, P))
    conn.started("web", P, None, forking=False)
    assert conn.service_of(P) == "web"
    fake.lost = True  # P's exit was among the lost: /proc no longer has it
    conn.sync()
    assert conn.service_of(P) is None
    assert emptied == ["web"]
    assert "dropped process events; rebuilding from /proc" in capfd.readouterr().err
    conn.close()


def test_a_connector_service_is_empty_at_its_last_members_exit_event(
        monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeConnector()
    monkeypatch.setattr(connector.Connector, "probe", classmethod(lambda cls: (fake, "")))
    loop = Loop()
    tracker = Tracker(loop, cgroup="off")
    assert tracker.default == "proc-connector"
    child = subprocess.Popen(["sleep", "30"])
    try:
        assert tracker.placement(config("web")) is None
        fake.push((FORK, os.getpid(), child.pid))
        tracker.started("web", child.pid)
        assert [s.pid for s in tracker.members("web")] == [child.pid]
        assert tracker.belongs("web", child.pid)
        fired: list[str] = []
        tracker.when_empty("web", lambda: fired.append("web"))
        loop.run_once(0)
        assert fired == []
        child.kill()
        child.wait()
        fake.push((EXIT, child.pid, 0))
        run_loop(loop, lambda: fired)
        assert fired == ["web"]
    finally:
        child.kill()
        child.wait()
        tracker.close()
    assert fake.closed


# -- orphans ------------------------------------------------------------------------


def test_orphans_are_roosts_children_it_did_not_spawn_with_their_service() -> None:
    me = P
    asked: list[int] = []

    def service_of(pid: int, table: dict[int, ProcStat] | None) -> str | None:
        asked.append(pid)
        return "web" if pid == P + 2 else None

    orphans = Orphans(Loop(), me, service_of)
    orphans.spawned(P + 1, 10)
    orphans.spawned(P + 5, 10)
    table = {p.pid: p for p in [
        st(me, 0),
        st(P + 1, me, start=10),               # spawned: no orphan
        st(P + 5, me, start=50),               # a stranger on a spawned process's PID
        st(P + 2, me, start=20, comm="worker"),
        st(P + 3, me, start=30, state="Z"),    # a zombie about to be reaped
        st(P + 4, P + 2, start=40),            # not roost's child
    ]}
    found = orphans.report(table)
    assert found == [{"pid": P + 5, "service": None, "command": f"[p{P + 5}]"},
                     {"pid": P + 2, "service": "web", "command": "[worker]"}]
    # What was seen at adoption stays, for as long as that process lives.
    table[P + 2] = st(P + 2, me, start=20, comm="renamed")
    assert orphans.report(table)[1] == {"pid": P + 2, "service": "web", "command": "[worker]"}
    assert sorted(asked) == [P + 2, P + 5]
    # Spawned processes no longer in the table are forgotten.
    del table[P + 1]
    orphans.report(table)
    assert orphans.reaped(P + 1) is None


def test_a_spawned_process_reaped_returns_its_start_time_once() -> None:
    orphans = Orphans(Loop(), P, lambda pid, table: None)
    orphans.spawned(P + 1, 77)
    assert orphans.reaped(P + 1) == 77
    assert orphans.reaped(P + 1) is None


def test_only_a_child_roost_did_not_spawn_born_since_came_home() -> None:
    child = subprocess.Popen(["sleep", "30"])
    try:
        orphans = Orphans(Loop(), os.getpid(), lambda pid, table: None)
        stat = proc.stat(child.pid)
        assert stat is not None
        assert orphans.came_home_since(stat.starttime)
        assert not orphans.came_home_since(stat.starttime + 1)  # born before that
        orphans.spawned(child.pid, stat.starttime)
        assert not orphans.came_home_since(stat.starttime)
    finally:
        child.kill()
        child.wait()
