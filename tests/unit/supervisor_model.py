"""A model of what roost does to independent services, for a hypothesis state machine.

Three services, one per restart policy, each a simple service that runs until told
otherwise. The rules are what an operator and a service can do: start, stop and
restart it, kill it (a crash: SIGKILL) or make it exit 0 (SIGUSR1, which the service
turns into a clean exit). After each rule the model says where the service must settle
and whether it must be a new process; a driver carries the rule out on a supervisor and
waits, with a deadline, for the model's word. Any other outcome is a divergence.

The same machine runs on two drivers: the supervisor on a fake edge
(tests/unit/test_supervisor_model.py, many sequences in seconds) and a live roost as
PID 1 of a PID namespace (tests/ns/test_supervisor_model.py, the same rules against real
processes and the kernel's signals).
"""

from __future__ import annotations

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Protocol

    class Driver(Protocol):
        """What a model needs of a supervisor: requests, signals, and what it reports."""

        def request(self, command: str, name: str) -> None: ...
        def kill(self, name: str, signum: int) -> None: ...
        def settle(self, name: str, state: str, not_pid: int | None) -> tuple[str, int | None]:
            """Wait (bounded) until `name` is in `state` (as a process other than `not_pid`)."""
        def check(self) -> None:
            """Fail if the supervisor is gone or broke a rule of its own."""
        def close(self) -> None: ...


SERVICES = {"always": "always", "onfail": "on-failure", "never": "never"}
SIGKILL, SIGUSR1 = 9, 10

names = st.sampled_from(sorted(SERVICES))


class SupervisorModel(RuleBasedStateMachine):
    """Start, stop, restart, crash and clean exits, each checked against the model."""

    make_driver: object = None  # set by each test module: () -> Driver

    def __init__(self) -> None:
        super().__init__()
        assert callable(self.make_driver)
        self.driver: Driver = self.make_driver()
        # Every service starts up (autostart).
        self.state = dict.fromkeys(SERVICES, "up")
        self.pid: dict[str, int | None] = {}
        for name in SERVICES:
            self._expect(name, "up", fresh=True)

    def _expect(self, name: str, state: str, fresh: bool) -> None:
        old = self.pid.get(name)
        got, pid = self.driver.settle(name, state, old if fresh else None)
        assert got == state, f"{name}: roost says {got}, the model {state}"
        if state == "up":
            assert pid is not None
            if fresh:
                assert pid != old, f"{name}: still pid {pid}, the model wants a new process"
            else:
                assert pid == old, f"{name}: pid {old} became {pid}, the model wants the same"
        self.state[name] = state
        self.pid[name] = pid if state == "up" else None

    @rule(name=names)
    def start(self, name: str) -> None:
        """Start: up; a new process unless it was up already."""
        fresh = self.state[name] != "up"
        self.driver.request("start", name)
        self._expect(name, "up", fresh)

    @rule(name=names)
    def stop(self, name: str) -> None:
        """Stop: down, whatever the policy."""
        self.driver.request("stop", name)
        self._expect(name, "down", fresh=False)

    @rule(name=names)
    def restart(self, name: str) -> None:
        """Restart: up, always a new process."""
        self.driver.request("restart", name)
        self._expect(name, "up", fresh=True)

    @precondition(lambda self: any(s == "up" for s in self.state.values()))
    @rule(data=st.data())
    def crash(self, data: st.DataObject) -> None:
        """Killed: a failure; restarted by `always` and `on-failure`, `failed` under `never`."""
        name = data.draw(st.sampled_from(sorted(n for n, s in self.state.items() if s == "up")))
        self.driver.kill(name, SIGKILL)
        self._expect(name, "failed" if SERVICES[name] == "never" else "up", fresh=True)

    @precondition(lambda self: any(s == "up" for s in self.state.values()))
    @rule(data=st.data())
    def clean_exit(self, data: st.DataObject) -> None:
        """Exit 0: restarted by `always` only; otherwise down, and no longer wanted."""
        name = data.draw(st.sampled_from(sorted(n for n, s in self.state.items() if s == "up")))
        self.driver.kill(name, SIGUSR1)
        self._expect(name, "up" if SERVICES[name] == "always" else "down", fresh=True)

    @invariant()
    def supervisor_holds(self) -> None:
        """The supervisor lives and keeps its own rules between any two steps."""
        self.driver.check()

    def teardown(self) -> None:
        """Release the driver (and, live, the namespace)."""
        self.driver.close()
