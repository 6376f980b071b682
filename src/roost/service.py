"""One service's life as a pure state machine: events in, actions out.

The machine never touches the operating system. The supervisor feeds it events
(a start or stop request, the process spawned or exited, readiness, a timer) and
carries out the actions it returns (spawn, signal, arm or disarm a timer). Time
is passed in, and randomness (the backoff jitter) is injected, so every path
can be driven by a test with a fake clock.

States:
  down      not running, and not trying to (stopped, never started, or waiting
            for a requirement: `reason` says which)
  starting  spawned, not ready yet (ready = exec succeeded, a newline on the
            notification fd, READY=1, or a oneshot/forking launcher's exit 0)
  up        running and ready
  stopping  signalled to stop, or its main process is gone and leftovers of the
            service are being cleaned up; it is down only when all are gone
  backoff   exited and waiting out the restart delay
  failed    given up on: an exit the policy does not restart, too many starts
            in the window, a start that never became ready, or a command that
            could not be started at all (not found, exec failed: restarting
            it would fail the same way)
  done      a oneshot that exited 0
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from roost.config.model import ServiceConfig
    from roost.exits import ExitStatus

DOWN = "down"
STARTING = "starting"
UP = "up"
STOPPING = "stopping"
BACKOFF = "backoff"
FAILED = "failed"
DONE = "done"
STATES = (DOWN, STARTING, UP, STOPPING, BACKOFF, FAILED, DONE)

RUNNING = frozenset({STARTING, UP, STOPPING})
READY = frozenset({UP, DONE})

# Timer names: a machine has at most one armed timer of each.
T_BACKOFF = "backoff"
T_START = "start"
T_STOP = "stop"

# The random spread of a restart delay, as a fraction of it: services that fail
# together (a shared dependency died) do not all come back in the same instant.
JITTER = 0.2

SIGKILL = 9


def _uniform() -> float:
    """A number in [0, 1) for the jitter, without the `random` module's import cost."""
    return int.from_bytes(os.urandom(4), "little") / 2**32


class Spawn:
    """Start the service's command; answer with spawned() or spawn_failed()."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "Spawn()"


class Kill:
    """Send `signal` to the main process ("main") or to every process of the service ("all")."""

    __slots__ = ("scope", "signal")

    def __init__(self, signal: int, scope: str = "all"):
        self.signal = signal
        self.scope = scope

    def __repr__(self) -> str:
        return f"Kill({self.signal}, {self.scope!r})"


class Arm:
    """Arm timer `name` to fire after `delay` seconds, replacing one of the same name."""

    __slots__ = ("delay", "name")

    def __init__(self, name: str, delay: float):
        self.name = name
        self.delay = delay

    def __repr__(self) -> str:
        return f"Arm({self.name!r}, {self.delay:.3f})"


class Disarm:
    """Cancel timer `name` if armed."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return f"Disarm({self.name!r})"


class FindMain:
    """A forking launcher exited 0: find the daemon; answer with main_found() or main_missing()."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "FindMain()"


Action = Spawn | Kill | Arm | Disarm | FindMain


class Machine:
    """The state of one service and the rules that move it."""

    __slots__ = (
        "_after_stop",
        "_next_delay",
        "_rng",
        "config",
        "last_exit",
        "last_status",
        "pid",
        "reason",
        "restarts",
        "since",
        "started_at",
        "starts",
        "state",
        "up_since",
        "want",
    )

    def __init__(self, config: ServiceConfig, now: float,
                 rng: Callable[[], float] | None = None):
        self.config = config
        self.state = DOWN
        self.want = False
        self.pid: int | None = None
        self.reason = ""
        self.last_exit: str | None = None
        self.last_status: ExitStatus | None = None
        self.restarts = 0
        self.since = now
        self.started_at: float | None = None
        self.up_since: float | None = None
        self.starts: list[float] = []
        self._next_delay = config.restart_delay
        # What to do once every process is gone while stopping: "down", "restart",
        # "failure" (a start that timed out), or "exit" (leftovers after an exit).
        self._after_stop = "down"
        self._rng = rng or _uniform

    # -- requests ------------------------------------------------------------

    def start(self, now: float) -> list[Action]:
        """Want the service up: start it now, or once its current stop completes."""
        self.want = True
        if self.state in (DOWN, DONE, FAILED):
            if self.state == FAILED:
                self.starts.clear()
                self._next_delay = self.config.restart_delay
            return self._spawn(now)
        if self.state == BACKOFF:
            return [Disarm(T_BACKOFF), *self._spawn(now)]
        if self.state == STOPPING:
            self._after_stop = "restart"
        return []

    def stop(self, now: float, reason: str = "stopped") -> list[Action]:
        """Want the service down: signal it, cancel a pending restart, or forget a failure."""
        self.want = False
        if self.state in (STARTING, UP):
            self._after_stop = "down"
            return self._begin_stop(now, reason)
        if self.state == STOPPING:
            self._after_stop = "down"
            self.reason = reason
            return []
        if self.state == BACKOFF:
            self._enter(DOWN, now, reason)
            return [Disarm(T_BACKOFF)]
        if self.state in (DONE, FAILED):
            self._enter(DOWN, now, reason)
        elif self.state == DOWN:
            self.reason = reason
        return []

    def restart(self, now: float) -> list[Action]:
        """Stop the service if it runs, then start it again."""
        if self.state in (STARTING, UP):
            actions = self._begin_stop(now, "restarting")
            self._after_stop = "restart"
            self.want = True
            return actions
        return self.start(now)

    def reset(self, now: float) -> None:
        """Forget a failure or a finished oneshot: down, ready to start afresh."""
        if self.state in (FAILED, DONE):
            self._enter(DOWN, now, "")
        if self.state in (DOWN, FAILED, DONE):
            self.starts.clear()
            self._next_delay = self.config.restart_delay

    def hold(self, now: float, reason: str) -> None:
        """Keep a down service down for `reason` (a requirement not ready)."""
        if self.state == DOWN:
            self.reason = reason

    # -- process events ------------------------------------------------------

    def spawned(self, pid: int, now: float) -> list[Action]:
        """The command was started as `pid`."""
        self.pid = pid
        return []

    def spawn_failed(self, reason: str, now: float) -> list[Action]:
        """The command could not be started at all (not found, exec failed): failed, not retried."""
        self.pid = None
        self.last_exit = reason
        self.last_status = None
        if self.state == STOPPING:
            return [Disarm(T_STOP), *self._stopped(now)]
        if self.state not in (STARTING, UP):
            return []
        if self.want:
            self._enter(FAILED, now, reason)
        else:
            self._enter(DOWN, now, "stopped")
        return [Disarm(T_START)]

    def exec_done(self, now: float) -> list[Action]:
        """The exec succeeded; for `ready = "exec"` that is readiness."""
        if self.state == STARTING and self.config.ready == "exec":
            self._enter(UP, now, "")
        return []

    def ready(self, now: float) -> list[Action]:
        """The service said it is ready (notification fd newline, or READY=1)."""
        if self.state == STARTING and self.config.ready not in ("exec", "exit"):
            self._enter(UP, now, "")
            return [Disarm(T_START)]
        return []

    def main_found(self, pid: int, now: float) -> list[Action]:
        """A forking service's daemon was identified: it is the main process, and up."""
        if self.state != STARTING:
            return []
        self.pid = pid
        self._enter(UP, now, "")
        return [Disarm(T_START)]

    def main_changed(self, pid: int, now: float) -> list[Action]:
        """The main process handed over to `pid` (a daemon's last fork) and lives on in it."""
        if self.state in RUNNING:
            self.pid = pid
        return []

    def main_missing(self, reason: str, now: float) -> list[Action]:
        """A forking launcher exited 0 but no daemon could be identified."""
        if self.state != STARTING:
            return []
        self.last_exit = reason
        self.last_status = None
        return [Disarm(T_START), *self._after_exit(now, success=False, leftovers=True)]

    def exited(self, status: ExitStatus, now: float, leftovers: bool = False,
               detail: str | None = None) -> list[Action]:
        """The main process ended; `leftovers`: other processes of the service remain."""
        self.pid = None
        self.last_status = status
        if not (self.state == STOPPING and self._after_stop == "failure"):
            # Stopping a start that timed out: the timeout, not the signal, is the cause.
            self.last_exit = detail or status.describe()
        if self.state == STOPPING:
            if leftovers:
                return []
            return [Disarm(T_STOP), *self._stopped(now)]
        if self.state not in (STARTING, UP):
            return []
        if (self.config.type == "forking" and self.state == STARTING and status.success):
            return [FindMain()]
        return [Disarm(T_START), *self._after_exit(now, status.success, leftovers)]

    def gone(self, now: float) -> list[Action]:
        """Every process of the service is gone."""
        if self.state == STOPPING and self.pid is None:
            return [Disarm(T_STOP), *self._stopped(now)]
        return []

    def timer(self, name: str, now: float) -> list[Action]:
        """Timer `name` fired."""
        if name == T_BACKOFF and self.state == BACKOFF:
            return self._spawn(now)
        if name == T_STOP and self.state == STOPPING:
            self.reason = f"did not stop within {self.config.stop_timeout:g}s: killed"
            return [Kill(SIGKILL, "all")]
        if name == T_START and self.state == STARTING:
            self.last_exit = f"not ready within {self.config.start_timeout:g}s"
            self.last_status = None
            actions = self._begin_stop(now, self.last_exit)
            self._after_stop = "failure"
            return actions
        return []

    # -- rules -----------------------------------------------------------------

    def _enter(self, state: str, now: float, reason: str) -> None:
        if state != self.state:
            self.since = now
        self.state = state
        self.reason = reason
        if state == UP:
            self.up_since = now

    def _spawn(self, now: float) -> list[Action]:
        self.starts.append(now)
        self.started_at = now
        self.up_since = None
        self._after_stop = "down"
        self._enter(STARTING, now, "")
        actions: list[Action] = []
        # The timer is armed before the spawn: a spawn that fails at once disarms it.
        if self.config.ready != "exec" and self.config.start_timeout > 0:
            actions.append(Arm(T_START, self.config.start_timeout))
        actions.append(Spawn())
        return actions

    def _begin_stop(self, now: float, reason: str) -> list[Action]:
        self._enter(STOPPING, now, reason)
        return [
            Disarm(T_START),
            Kill(self.config.stop_signal, "all"),
            Arm(T_STOP, self.config.stop_timeout),
        ]

    def _after_exit(self, now: float, success: bool, leftovers: bool = False) -> list[Action]:
        """The main process is gone without being asked to: clean up, then decide."""
        if leftovers:
            actions = self._begin_stop(now, f"{self.last_exit}; stopping what it left")
            self._after_stop = "exit" if success else "failure"
            return actions
        return self._decide(now, success)

    def _stopped(self, now: float) -> list[Action]:
        after = self._after_stop
        self._after_stop = "down"
        if after == "restart":
            return self._spawn(now)
        if after == "exit":
            return self._decide(now, success=True)
        if after == "failure":
            return self._decide(now, success=False)
        self._enter(DOWN, now, self.reason if self.reason != "restarting" else "stopped")
        return []

    def _decide(self, now: float, success: bool) -> list[Action]:
        policy = self.config.restart
        if not self.want:
            self._enter(DOWN, now, "stopped")
            return []
        if success and self.config.type == "oneshot":
            self._enter(DONE, now, "")
            return []
        if policy == "always" or (policy == "on-failure" and not success):
            return self._backoff(now)
        if success:
            self._enter(DOWN, now, self.last_exit or "")
        else:
            self._enter(FAILED, now, self.last_exit or "failed")
        return []

    def _backoff(self, now: float) -> list[Action]:
        config = self.config
        if self.up_since is not None and now - self.up_since >= config.restart_reset:
            self._next_delay = config.restart_delay
        window_start = now - config.restart_window
        self.starts = [t for t in self.starts if t > window_start]
        if len(self.starts) >= config.restart_limit:
            self._enter(FAILED, now,
                        f"started {len(self.starts)} times within {config.restart_window:g}s, "
                        f"giving up (last: {self.last_exit})")
            return []
        delay = self._next_delay
        self._next_delay = min(delay * 2, config.restart_delay_max)
        delay = min(delay * (1 + JITTER * (2 * self._rng() - 1)), config.restart_delay_max)
        self.restarts += 1
        self._enter(BACKOFF, now, f"{self.last_exit}; restarting in {delay:.2f}s")
        return [Arm(T_BACKOFF, delay)]
