"""Health checks: a service that is up, probed every `interval`, unhealthy after `retries`.

The checks are the supervisor's, not the machine's: while a service with a `health`
table is up, a timer starts one probe at a time (a command run as the service runs,
a TCP connect, an HTTP GET; probes.py), each with its timeout. `retries` failures in a
row (those within `start_period` of the start not counted, until a first success)
make it unhealthy: the machine is told once, as its `unhealthy` timer, and stops it as
a failure. A service without `health` has no Health, no timer and no probe.
"""

from __future__ import annotations

import _signal
import os

from roost.core import machine
from roost.kernel import console
from roost.kernel.spawn import SpawnError
from roost.supervise import command
from roost.supervise.probes import CommandProbe, Connect, shown
from roost.supervise.runtime import HEALTHY, UNHEALTHY, Health

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from roost.core.actions import Action
    from roost.core.exits import ExitStatus
    from roost.core.model import HealthCheck
    from roost.kernel.loop import Loop
    from roost.kernel.reaper import Reaper
    from roost.kernel.spawn import Child, Command
    from roost.supervise.runtime import Runtime

class Checks:
    """Every service's health checks, in the supervisor's reactor, with its spawner."""

    def __init__(self, loop: Loop, reaper: Reaper, spawner: Callable[[Command], Child],
                 base_env: Mapping[str, str], event: Callable[[Runtime, list[Action]], None],
                 *, pdeathsig: int = 0, nofile: tuple[int, int] | None = None):
        self._loop = loop
        self._reaper = reaper
        self._spawner = spawner
        self._env = base_env
        self._event = event
        self._pdeathsig = pdeathsig
        self._nofile = nofile

    def follow(self, rt: Runtime) -> None:
        """The service changed state: checks begin when it is up, and end when it is not."""
        check = rt.config.health
        h = rt.health
        if rt.machine.state == machine.UP and check is not None:
            if h is None or not h.active:
                rt.health = h = Health(self._loop.now())
                self._next(rt, h, check)
        elif h is not None and h.active:
            self.end(h)

    def end(self, h: Health) -> None:
        """No more probes for this run: the one under way is abandoned, the timer cancelled."""
        h.active = False
        if h.timer is not None:
            h.timer.cancel()
            h.timer = None
        if h.probe is not None:
            h.probe.cancel()
            h.probe = None

    def _next(self, rt: Runtime, h: Health, check: HealthCheck) -> None:
        h.timer = self._loop.call_later(check.interval, lambda: self._probe(rt, h, check))

    def _probe(self, rt: Runtime, h: Health, check: HealthCheck) -> None:
        h.timer = None

        def done(ok: bool, text: str) -> None:
            h.probe = None
            self._result(rt, h, check, ok, text)

        if check.kind == "command":
            self._run(rt, h, check, done)
        else:
            h.probe = Connect(self._loop, check.host, check.port, check.timeout, done,
                              path=check.path if check.kind == "http" else None)

    def _run(self, rt: Runtime, h: Health, check: HealthCheck,
             done: Callable[[bool, str], None]) -> None:
        read_fd = write_fd = -1
        try:
            read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
            cmd = command.build(rt.config, self._env, log_fds=(write_fd, write_fd),
                                argv=check.argv, pdeathsig=self._pdeathsig,
                                nofile=self._nofile)
            child = self._spawner(cmd)
        except (SpawnError, OSError, ValueError) as exc:
            if read_fd >= 0:
                os.close(read_fd)
            text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            # From the loop, as every probe's outcome: `done` may stop the service.
            h.timer = self._loop.call_later(0, lambda: done(False, f"cannot start: {text}"))
            return
        finally:
            if write_fd >= 0:
                os.close(write_fd)
        probe = CommandProbe(self._loop, child, read_fd)
        h.probe = probe

        def timed_out() -> None:
            probe.timer = None
            probe.timed_out = True
            probe.child.signal_group(_signal.SIGKILL)

        def exited(_pid: int, status: ExitStatus) -> None:
            known, error = child.exec_result()
            probe.finished()
            if h.probe is not probe:
                return  # abandoned: the run it was for is over
            if known and error:
                done(False, f"cannot start: {error}")
            elif probe.timed_out:
                done(False, f"no answer within {check.timeout:g}s: killed")
            else:
                said = shown(probe.output)
                text = status.describe() + (f": {said}" if said else "")
                done(status.success, text)

        probe.timer = self._loop.call_later(check.timeout, timed_out)
        self._reaper.watch(child.pid, exited)

    def _result(self, rt: Runtime, h: Health, check: HealthCheck, ok: bool, text: str) -> None:
        if not h.active or rt.health is not h:
            return
        now = self._loop.now()
        h.checks += 1
        h.last = text
        if ok:
            if h.state != HEALTHY:
                console.say(f"{rt.name}: healthy ({text})")
            h.state, h.failures = HEALTHY, 0
        elif h.state == HEALTHY or now - h.since >= check.start_period:
            h.failures += 1
            console.debug(f"{rt.name}: health check failed ({h.failures} of {check.retries}): "
                          f"{text}")
        if h.failures >= check.retries:
            h.state = UNHEALTHY
            console.say(f"{rt.name}: unhealthy after {h.failures} failed health checks "
                        f"(last: {text})")
            self.end(h)
            self._event(rt, rt.machine.timer(machine.T_UNHEALTHY, now))
            return
        self._next(rt, h, check)
