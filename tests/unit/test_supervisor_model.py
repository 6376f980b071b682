"""The supervisor model (tests/unit/supervisor_model.py) on a fake edge: many sequences, fast.

The fake children exec at once, die when their service is stopped,
and exit as the model's rules tell them; everything between is roost's own reactor,
timers, machines and order.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings

from roost.core.exits import ExitStatus
from tests.unit.supervisor_model import SERVICES, SIGUSR1, SupervisorModel
from tests.unit.test_supervisor import World, service


class FakeDriver:
    """The model's driver over the supervisor on fakes."""

    def __init__(self) -> None:
        self.world = World([service(name, restart=policy, restart_delay=0.01,
                                    restart_delay_max=0.01, restart_limit=10_000)
                            for name, policy in SERVICES.items()])
        self.world.supervisor.start_all()

    def _live(self, name: str):  # type: ignore[no-untyped-def]
        children = self.world.children.get(name, [])
        return children[-1] if children and not children[-1].closed else None

    def _run_children(self) -> None:
        """What real processes would do: exec at once, and die of the stop signal.

        The supervisor signals a service through its tracker, which finds no process
        for these pids: a stopping service's process is the one to die.
        """
        machines = self.world.supervisor.order.machines
        for name, children in self.world.children.items():
            for child in children:
                if child.closed:
                    continue
                child.exec_succeeded()
                if machines[name].state == "stopping" and self.world.reaper.owns(child.pid):
                    self.world.reaper.exit(child.pid, ExitStatus(signal=15))

    def request(self, command: str, name: str) -> None:
        getattr(self.world.supervisor, command)([name])

    def kill(self, name: str, signum: int) -> None:
        child = self._live(name)
        assert child is not None, f"{name} has no process"
        status = ExitStatus(code=0) if signum == SIGUSR1 else ExitStatus(signal=signum)
        self.world.reaper.exit(child.pid, status)

    def settle(self, name: str, state: str, not_pid: int | None) -> tuple[str, int | None]:
        def reached() -> bool:
            self._run_children()
            m = self.world.supervisor.order.machines[name]
            return m.state == state and (state != "up" or m.pid != not_pid)

        try:
            self.world.turn(reached, limit=5.0)
        except AssertionError:
            pass  # the model names the divergence
        m = self.world.supervisor.order.machines[name]
        return m.state, m.pid

    def check(self) -> None:
        for name in SERVICES:
            alive = [c for c in self.world.children.get(name, []) if not c.closed]
            assert len(alive) <= 1, f"{name}: {len(alive)} processes at once"

    def close(self) -> None:
        self.world.close()


class FakeModel(SupervisorModel):
    make_driver = FakeDriver


@pytest.mark.timeout(300)
def test_the_supervisor_on_fakes_does_what_the_model_says() -> None:
    run = FakeModel.TestCase()
    run.settings = settings(max_examples=60, stateful_step_count=25, deadline=None,
                            suppress_health_check=[HealthCheck.too_slow])
    run.runTest()
