"""Health checks on the supervisor's fake edge (tests/unit/test_supervisor.py's World) with
real tcp probes against a listener the test opens and closes: when a failure counts, what
a success does to the start period, and that a service that leaves `up` leaves no probe."""

from __future__ import annotations

import socket

import pytest

from roost.core import machine
from roost.core.model import HealthCheck
from tests.unit.test_supervisor import World, service

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    yield sock
    sock.close()


def checked(port: int, **values: object) -> HealthCheck:
    check = HealthCheck("tcp")
    check.host, check.port, check.interval, check.timeout = "127.0.0.1", port, 0.05, 2.0
    for key, value in values.items():
        setattr(check, key, value)
    return check


def up(port: int, **values: object) -> World:
    w = World([service("web", health=checked(port, **values))])
    w.supervisor.start_all()
    w.turn()
    w.exec_ok("web")
    assert w.state("web") == machine.UP
    return w


def health(w: World) -> dict[str, object]:
    (record,) = w.supervisor.status(["web"])
    return record


def test_failures_in_the_start_period_do_not_count_until_it_is_over(
        listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    listener.close()  # nothing listens: every probe fails
    w = up(port, retries=1, start_period=1.0)
    try:
        w.turn(lambda: int(str(health(w)["health_checks"])) >= 3)
        record = health(w)
        assert (record["health"], record["health_failures"]) == ("starting", 0), record
        assert w.state("web") == machine.UP
        w.turn(lambda: w.state("web") != machine.UP)
        record = health(w)
        assert record["state"] == machine.STOPPING and record["reason"] == "unhealthy"
        assert record["health"] == "unhealthy"
        assert record["health_last"] == f"connect to 127.0.0.1:{port}: Connection refused"
    finally:
        w.close()


def test_a_success_ends_the_start_period(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    w = up(port, retries=2, start_period=1000.0)
    try:
        w.turn(lambda: health(w)["health"] == "healthy")
        listener.close()
        w.turn(lambda: w.state("web") != machine.UP)
        record = health(w)
        assert (record["health"], record["health_failures"]) == ("unhealthy", 2)
        assert record["last_exit"] == "unhealthy"
        # Stopping as a failure: once the process is gone, on-failure restarts it.
        w.exit("web", signal=15)
        w.turn()
        assert w.state("web") == machine.BACKOFF
        assert health(w)["health"] == "unhealthy"  # what ended the run, until the next
    finally:
        w.close()


def test_leaving_up_abandons_the_probe_and_its_timer(listener: socket.socket) -> None:
    w = up(listener.getsockname()[1], interval=0.2)
    try:
        rt = w.supervisor.services["web"]
        assert rt.health is not None and rt.health.timer is not None
        w.supervisor.stop(["web"])
        w.turn()
        assert w.state("web") == machine.STOPPING
        h = rt.health
        assert (h.active, h.timer, h.probe) == (False, None, None)
        assert health(w)["health"] is None  # not up: no health to speak of
        w.exit("web", signal=15)
        w.turn()
        assert w.state("web") == machine.DOWN
    finally:
        w.close()


def test_no_health_no_checks() -> None:
    w = World([service("web")])
    try:
        w.supervisor.start_all()
        w.turn()
        w.exec_ok("web")
        rt = w.supervisor.services["web"]
        assert rt.health is None and rt.poll is None
        assert list(rt.timers) == []
        # Its status record says nothing of health at all.
        assert not any(key.startswith("health") for key in health(w))
    finally:
        w.close()
