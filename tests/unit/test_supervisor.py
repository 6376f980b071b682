"""The supervisor on a fake edge: a real reactor, no processes.

The spawner hands out children whose pids are above the kernel's pid_max (no
real process can have them, so no signal can reach one); the reaper reports
the exits a test chooses; tracking is the lineage floor, which finds none of
these pids in /proc. Everything else is roost's own: the machines, the order,
the reactor's timers and descriptors, the service log pipes.
"""

from __future__ import annotations

import os

import pytest

from roost.core import machine
from roost.core.exits import ExitStatus
from roost.core.model import Config, ServiceConfig, Settings
from roost.kernel.loop import Loop
from roost.kernel.reaper import Reaper
from roost.supervise.logs import LogSettings
from roost.supervise.supervisor import Supervisor
from roost.tracking import Tracker

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from roost.kernel.spawn import Command

with open("/proc/sys/kernel/pid_max") as _f:
    PID_MAX = int(_f.read())


class FakeChild:
    """What spawn() returns, for a process that does not exist."""

    def __init__(self, pid: int):
        self.pid = pid
        # A real pipe: the supervisor watches it as it watches a real exec report.
        self.exec_fd, self._exec_w = os.pipe2(os.O_CLOEXEC)
        self.signals: list[int] = []
        self.closed = False

    def exec_succeeded(self) -> None:
        """The exec went through: the write end closes (CLOEXEC), nothing was written."""
        if self._exec_w >= 0:
            os.close(self._exec_w)
            self._exec_w = -1

    def exec_result(self) -> tuple[bool, str | None]:
        if self._exec_w >= 0:
            return False, None
        if self.exec_fd >= 0:
            os.close(self.exec_fd)
            self.exec_fd = -1
        return True, None

    def signal(self, signum: int) -> bool:
        self.signals.append(signum)
        return True

    def close(self) -> None:
        self.exec_succeeded()
        if self.exec_fd >= 0:
            os.close(self.exec_fd)
            self.exec_fd = -1
        self.closed = True


class FakeReaper(Reaper):
    """roost's reaper, never drained: the exits come from the test."""

    __slots__ = ()

    def exit(self, pid: int, status: ExitStatus) -> None:
        assert self.owns(pid), f"nobody watches {pid}"
        callback = self._owners.pop(pid)
        callback(pid, status)


class World:
    """One supervisor over fakes, and what it asked of them."""

    def __init__(self, services: list[ServiceConfig]):
        self.loop = Loop()
        self.reaper = FakeReaper()
        self.children: dict[str, list[FakeChild]] = {}
        self._next_pid = PID_MAX + 1000
        config = Config("/nonexistent", {s.name: s for s in services}, Settings())
        tracker = Tracker(self.loop, means="lineage", cgroup="off", pid1=False)
        self.supervisor = Supervisor(config, self.loop, self.reaper,
                                     LogSettings(None, console=False), tracker,
                                     spawner=self.spawn, environ={"PATH": "/usr/bin"})

    def spawn(self, command: Command) -> FakeChild:
        self._next_pid += 1
        child = FakeChild(self._next_pid)
        name = next(n for n, rt in self.supervisor.services.items()
                    if rt.config.argv == command.argv)
        self.children.setdefault(name, []).append(child)
        return child

    def child(self, name: str) -> FakeChild:
        return self.children[name][-1]

    def state(self, name: str) -> str:
        return self.supervisor.order.machines[name].state

    def states(self) -> dict[str, str]:
        return {name: self.state(name) for name in self.supervisor.services}

    def turn(self, until: Callable[[], bool] | None = None, limit: float = 5.0) -> None:
        """Run the reactor without waiting, or until `until()` (a deadline, not a timing)."""
        end = self.loop.now() + limit
        while True:
            self.loop.run_once(0 if until is None else 0.01)
            if until is None or until():
                return
            assert self.loop.now() < end, f"not reached within {limit}s: {self.states()}"

    def exec_ok(self, name: str) -> None:
        self.child(name).exec_succeeded()
        self.turn(lambda: self.state(name) != machine.STARTING)

    def exit(self, name: str, code: int | None = 0, signal: int | None = None) -> None:
        child = self.child(name)
        self.reaper.exit(child.pid, ExitStatus(code, signal))

    def close(self) -> None:
        for rt in list(self.supervisor.services.values()):
            rt.log.close(self.loop)
        self.supervisor.tracker.close()


def service(name: str, **values: object) -> ServiceConfig:
    cfg = ServiceConfig(name, f"/nonexistent/{name}.toml", [f"/bin/{name}"])
    for key, value in values.items():
        setattr(cfg, key, value)
    if cfg.type == "oneshot":
        cfg.ready = "exit"
    return cfg


@pytest.fixture
def world() -> Iterator[Callable[..., World]]:
    made: list[World] = []

    def make(*services: ServiceConfig) -> World:
        made.append(World(list(services)))
        return made[-1]

    yield make
    for w in made:
        w.close()


def test_a_requirement_starts_first_and_its_requirer_once_it_is_up(world) -> None:
    w = world(service("db"), service("web", requires=["db"]))
    w.supervisor.start_all()
    assert w.states() == {"db": "starting", "web": "down"}
    assert "web" not in w.children
    assert w.supervisor.order.machines["web"].reason == "waiting for db"
    w.exec_ok("db")
    assert w.states() == {"db": "up", "web": "starting"}
    w.exec_ok("web")
    assert w.states() == {"db": "up", "web": "up"}
    assert w.supervisor.order.settled_up(["db", "web"])


def test_a_crash_backs_off_then_starts_again_on_the_reactors_timer(world) -> None:
    w = world(service("api", restart_delay=0.01, restart_delay_max=0.01))
    w.supervisor.start_all()
    w.exec_ok("api")
    first = w.child("api")
    w.exit("api", code=3)
    assert w.state("api") == "backoff"
    assert first.closed
    w.turn(lambda: w.state("api") == "starting")
    assert len(w.children["api"]) == 2
    assert w.supervisor.status(["api"])[0]["restarts"] == 1


def test_stop_signals_the_service_then_waits_for_its_exit(world) -> None:
    w = world(service("db"), service("web", requires=["db"]))
    w.supervisor.start_all()
    w.exec_ok("db")
    w.exec_ok("web")
    w.supervisor.stop(["db"])
    # web requires db: it stops first, and db waits until it has.
    assert w.states() == {"db": "up", "web": "stopping"}
    w.exit("web", signal=15)
    assert w.states() == {"db": "stopping", "web": "down"}
    w.exit("db", signal=15)
    assert w.states() == {"db": "down", "web": "down"}
    assert w.supervisor.order.settled_down(["db", "web"])


def test_stop_all_calls_back_once_everything_is_down(world) -> None:
    w = world(service("a"), service("b", wants=["a"]))
    w.supervisor.start_all()
    w.exec_ok("a")
    w.exec_ok("b")
    done: list[bool] = []
    w.supervisor.stop_all(then=lambda: done.append(True))
    assert done == []
    w.exit("b", signal=15)
    assert done == []
    w.exit("a", signal=15)
    assert done == [True]


def test_a_failed_requirement_holds_its_requirer_down_and_wanted(world) -> None:
    w = world(service("db", restart="never"), service("web", requires=["db"]))
    w.supervisor.start_all()
    w.exec_ok("db")
    w.exec_ok("web")
    w.exit("db", code=1)
    assert w.states() == {"db": "failed", "web": "stopping"}
    w.exit("web", signal=15)
    web = w.supervisor.order.machines["web"]
    assert (web.state, web.want, web.reason) == ("down", True, "requirement db failed")
    w.supervisor.start(["db"])
    w.exec_ok("db")
    assert w.state("web") == "starting"


def test_a_command_that_cannot_start_fails_without_a_restart(world) -> None:
    w = world(service("ghost", user="no-such-user-roost-test"))
    w.supervisor.start_all()
    m = w.supervisor.order.machines["ghost"]
    assert m.state == "failed"
    assert "no such user" in (m.last_exit or "")
    assert "ghost" not in w.children


def test_signal_goes_to_the_main_process(world) -> None:
    w = world(service("app"))
    w.supervisor.start_all()
    w.exec_ok("app")
    assert w.supervisor.send_signal("app", 10)
    assert w.child("app").signals == [10]


def test_reload_adds_removes_and_restarts_only_what_changed(world) -> None:
    w = world(service("keep"), service("change"), service("drop"))
    w.supervisor.start_all()
    for name in ("keep", "change", "drop"):
        w.exec_ok(name)
    new = Config("/nonexistent", {"keep": service("keep"),
                                  "change": service("change", stop_timeout=3.0),
                                  "add": service("add")}, Settings())
    summary = w.supervisor.reload(new)
    assert summary == {"added": ["add"], "removed": ["drop"], "changed": ["change"]}
    assert w.states() == {"keep": "up", "change": "stopping", "drop": "stopping",
                          "add": "starting"}
    w.exit("drop", signal=15)
    assert "drop" not in w.supervisor.services
    w.exit("change", signal=15)
    assert w.state("change") == "starting"
    assert len(w.children["keep"]) == 1


def test_a_thousand_service_chain_starts_in_order_without_recursion(world) -> None:
    chain = [service("s0")] + [service(f"s{i}", requires=[f"s{i - 1}"]) for i in range(1, 1000)]
    w = world(*chain)
    w.supervisor.start_all()
    assert list(w.children) == ["s0"]
    w.supervisor.stop_all()
    w.exit("s0", signal=15)
    assert w.supervisor.order.all_down()
