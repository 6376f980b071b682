"""The supervisor model (tests/unit/supervisor_model.py) against a live roost.

Each sequence hypothesis draws runs on a fresh `roost up`, as PID 1 of a PID namespace,
over real processes: requests go over the control socket, crashes and clean exits are
real signals to the service's main process, and every state the model names is waited
for in `roost status`. A divergence fails with the sequence that led to it.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings

from tests import support
from tests.ns.supervisor_kit import ConfigDir, Roost
from tests.unit.supervisor_model import SERVICES, SupervisorModel

# Runs until killed; exits 0 on SIGUSR1 (the model's clean exit). It says it is ready
# (fd 3) only once that handler is in place: up means a SIGUSR1 is an exit 0.
SERVICE = """
import os, signal, sys, time
signal.signal(signal.SIGUSR1, lambda *_: sys.exit(0))
os.write(3, b"ready\\n")
while True:
    time.sleep(60)
"""


class LiveDriver:
    """The model's driver over `roost up` in a PID namespace of its own."""

    def __init__(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="roost-model-"))
        config = ConfigDir(self.workdir / "conf")
        command = config.python("service", SERVICE)
        for name, policy in SERVICES.items():
            config.service(name, command=command, ready="fd:3", restart=policy, restart_delay=0.05,
                           restart_delay_max=0.05, restart_limit=10_000)
        self.roost = Roost(config, "pid1", self.workdir)
        self.roost.wait_ready()

    def request(self, command: str, name: str) -> None:
        self.roost.call(command, services=[name], wait=True, timeout=20)

    def kill(self, name: str, signum: int) -> None:
        self.roost.call("signal", services=[name], signal=signum)

    def settle(self, name: str, state: str, not_pid: int | None) -> tuple[str, int | None]:
        last: dict[str, Any] = {}

        def reached() -> bool:
            last.update(self.roost.status(name))
            return bool(last["state"] == state and (state != "up" or last["pid"] != not_pid))

        try:
            support.wait_for(reached, timeout=10, what=f"{name} {state}")
        except AssertionError:
            pass  # the model names the divergence
        return last["state"], last["pid"]

    def check(self) -> None:
        assert self.roost.alive(), "roost is gone"

    def close(self) -> None:
        try:
            self.roost.close()
        finally:
            shutil.rmtree(self.workdir, ignore_errors=True)


class LiveModel(SupervisorModel):
    make_driver = LiveDriver


@pytest.mark.timeout(600)
def test_a_live_roost_does_what_the_model_says() -> None:
    support.require_unshare()
    run = LiveModel.TestCase()
    # No shrinking: each step of a live roost can take seconds, and a divergence is
    # reported with the whole sequence that led to it (the fake-edge model shrinks).
    run.settings = settings(max_examples=15, stateful_step_count=15, deadline=None,
                            phases=(Phase.explicit, Phase.reuse, Phase.generate),
                            suppress_health_check=list(HealthCheck))
    run.runTest()
