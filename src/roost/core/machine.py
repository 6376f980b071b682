"""One service's life as a pure state machine: events in, actions out.

Everything that decides what a service does next lives here; the supervisor only
carries out the actions (spawn, signal, arm or disarm a timer) and reports what
the system did (spawned, exited, ready, a timer fired). Time is passed in and the
jitter's randomness injected, so every path runs under a test with a fake clock.

A machine holds two things apart, as dinit does: where the service *is* and where
it is *wanted*.

  state       where it is now: one of STATES, below.
  want        where it should end up: True for up, False for down. Requests
              (start, stop, restart) set it; of the process events only a clean
              exit that the restart policy does not restart clears it (the
              service did what it was asked: nothing may start it again unasked).
  after_stop  what a stop in progress leads to once the last process is gone:
              "down" (a stop, or a hold), "restart" (a restart: spawn again),
              "failure" or "exit" (the main process ended on its own and left
              processes behind: once they are gone, the restart policy decides
              as for a failure or a clean exit; a start that timed out is a failure),
              "watchdog" (a failure that `restart = "on-watchdog"` restarts), "failed"
              (a command that could not start at all: failed, never retried).
  step        which command around the main one runs (core/commands.py), if any.

The order between services (order.py) decides *when* a wanted machine may start
and an unwanted one may stop; until then it tells the machine what it waits for
(`wait_for`), which is only shown. `want_up` and `want_down` change the want
without moving the machine; `start` and `stop` move it now. `hold` keeps a wanted
service down because something it requires failed: it is stopped if it runs, and
the order starts it again once the requirement is back.

The states, the timers and what each means are named in core/states.py.

Out-of-turn events are a choice, not an accident: an event that has no row in
core/table.py for the current state changes nothing and asks for nothing (a
`ready` from a service that is already up, a timer that fired after its state
was left, an exit reported twice). tests/unit/test_machine_table.py holds the
machine to that table, and docs/supervisor.md's transition table to its rendering.
"""

from __future__ import annotations

from roost.core import outcome
from roost.core.actions import Arm, Disarm, FindMain
from roost.core.commands import Commands
from roost.core.states import (  # a machine's users name its states from here: __all__
    BACKOFF,
    DONE,
    DOWN,
    FAILED,
    JITTER,
    READY,
    RUNNING,
    SIGABRT,
    SIGKILL,
    STARTING,
    STATES,
    STOPPING,
    T_BACKOFF,
    T_COMMAND,
    T_START,
    T_STOP,
    T_UNHEALTHY,
    T_WATCHDOG,
    UP,
)

__all__ = ["BACKOFF", "DONE", "DOWN", "FAILED", "JITTER", "READY", "RUNNING", "SIGABRT",
           "SIGKILL", "STARTING", "STATES", "STOPPING", "T_BACKOFF", "T_COMMAND", "T_START",
           "T_STOP", "T_UNHEALTHY", "T_WATCHDOG", "UP", "Machine"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from roost.core.actions import Action
    from roost.core.exits import ExitStatus
    from roost.core.model import ServiceConfig

class Machine(Commands):
    """The state of one service and the rules that move it."""

    __slots__ = (
        "_next_delay",
        "_rng",
        "_stop_reason",
        "_watchdog",
        "config",
        "pid",
        "restarts",
        "since",
        "starts",
        "state",
        "up_since",
        "want",
    )

    def __init__(self, config: ServiceConfig, now: float, rng: Callable[[], float]):
        self.config = config
        self.state = DOWN
        self.want = False
        self.pid: int | None = None
        # Why the service is where it is (shown by `roost status` when not up).
        self.reason = ""
        self.last_exit: str | None = None
        self.restarts = 0
        self.since = now
        self.up_since: float | None = None
        # When each start happened, within the restart window: the restart limit.
        self.starts: list[float] = []
        self._next_delay = config.restart_delay
        self._after_stop = "down"
        # The reason a want-down carries until the order lets the stop begin.
        self._stop_reason = "stopped"
        self._rng = rng
        # This run's watchdog (watchdog_sec, or what WATCHDOG_USEC= made it), and the
        # start or stop timer armed with when it fires (EXTEND_TIMEOUT_USEC= puts it off).
        self._watchdog = 0.0
        self._deadline: tuple[str, float] | None = None
        # How the last run ended, for the restart policy (model.RESTARTS_AFTER), and
        # whether it ended with a restart_prevent_exit_status.
        self._cause = "success"
        self._prevented = False
        # The command around the main one that runs now (core/commands.py): its list's
        # key ("" when none; "conditions" while they are looked at), its place in it.
        self.step = ""
        self._index = 0
        self._control = False
        self._timed_out = False
        # A command of this run ran (exec_condition, exec_start_pre, the main one):
        # exec_stop_post is owed when it ends.
        self._ran = False

    # -- what the operator and the order ask ------------------------------------------

    def want_up(self, now: float, fresh: bool = False) -> list[Action]:
        """Want the service up, without moving it: the order starts it in its turn.

        A failure is forgotten (so are the start count and the delay), and so is a
        finished oneshot with `fresh`: it is down, ready to start afresh.
        """
        self.want = True
        if fresh or self.state == FAILED:
            if self.state in (FAILED, DONE):
                self._enter(DOWN, now, "")
            if self.state == DOWN:
                self.starts.clear()
                self._next_delay = self.config.restart_delay
        return []

    def want_down(self, now: float, reason: str = "stopped") -> list[Action]:
        """Want the service down for `reason`; what runs stops once the order calls stop()."""
        self.want = False
        self._stop_reason = reason
        if self.state in (DONE, FAILED):
            self._enter(DOWN, now, reason)
        elif self.state == DOWN:
            self.reason = reason
        return self._no_start_after(now, reason)

    def start(self, now: float) -> list[Action]:
        """Want the service up and start it now, or once its current stop completes."""
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

    def stop(self, now: float, reason: str | None = None) -> list[Action]:
        """Want the service down and stop it now: signal it, or cancel a pending restart.

        Without `reason`, the one its want_down() gave.
        """
        reason = self._stop_reason if reason is None else reason
        if self.state in (STARTING, UP):
            self.want = False
            self._stop_reason = reason
            self._after_stop = "down"
            return self._begin_stop(now, reason)
        return self.want_down(now, reason)

    def restart(self, now: float) -> list[Action]:
        """Stop the service if it runs, then start it again."""
        if self.state in (STARTING, UP):
            actions = self._begin_stop(now, "restarting")
            self._after_stop = "restart"
            self.want = True
            return actions
        return self.start(now)

    def hold(self, now: float, reason: str) -> list[Action]:
        """Keep a wanted service down for `reason` (a requirement failed): stop it if it runs.

        It stays wanted: the order starts it again once the requirement allows.
        """
        if self.state in (STARTING, UP):
            actions = self._begin_stop(now, reason)
            self._after_stop = "down"
            return actions
        if self.state == DOWN and self.want:
            self.reason = reason
        return self._no_start_after(now, reason)

    def wait_for(self, now: float, reason: str) -> list[Action]:
        """The order keeps the service where it is for now, for `reason` (shown, nothing more)."""
        if (self.state == DOWN and self.want) or (self.state in (STARTING, UP) and not self.want):
            self.reason = reason
        return []

    def reconfigure(self, config: ServiceConfig) -> list[Action]:
        """Take a new definition; it applies from the next start, delay and stop on."""
        self.config = config
        return []

    # -- what the processes do --------------------------------------------------------

    def spawned(self, pid: int, now: float) -> list[Action]:
        """The command was started as `pid`."""
        if self.state in RUNNING:
            self.pid = pid
        return []

    def spawn_failed(self, reason: str, now: float) -> list[Action]:
        """The command could not be started at all (not found, exec failed): failed, not retried."""
        if self.state not in RUNNING:
            return []
        self.pid = None
        self.last_exit = reason
        self.step = "" if self.step == "conditions" else self.step
        if self.state == STOPPING:
            return [] if self._control else [Disarm(T_STOP), *self._stopped(now)]
        if self.state not in (STARTING, UP):
            return []
        actions = [Disarm(T_START), *self._unwatch()]
        if self._winds_down():
            # Not retried, once exec_stop_post ran: "failed" is not the policy's to decide.
            actions += self._begin_stop(now, reason)
            self._after_stop = "failed" if self.want else "down"
            return actions
        self._enter(FAILED if self.want else DOWN, now, reason if self.want else "stopped")
        return actions

    def skipped(self, reason: str, now: float) -> list[Action]:
        """A condition of this start is not met: nothing ran, and that is not a failure."""
        if self.state != STARTING or self.pid is not None or self._control:
            return []
        self.step = ""
        self._enter(DONE if self.want else DOWN, now, reason)
        return [Disarm(T_START)]

    def exec_done(self, now: float) -> list[Action]:
        """The exec succeeded; for `ready = "exec"` that is readiness."""
        if self.state == STARTING and self.config.ready == "exec" and not self.step:
            return self._ready_then_up(now)
        return []

    def ready(self, now: float) -> list[Action]:
        """The service said it is ready (notification fd newline, or READY=1)."""
        if self.state == STARTING and self.config.ready not in ("exec", "exit") and not self.step:
            return [Disarm(T_START), *self._ready_then_up(now)]
        return []

    def keepalive(self, now: float, timeout: float | None = None) -> list[Action]:
        """WATCHDOG=1: the watchdog starts over; `timeout` (WATCHDOG_USEC=): this run's, 0 off."""
        if self.state not in RUNNING:
            return []
        if timeout is not None:
            self._watchdog = timeout
        if self.state != UP:
            return []
        if self._watchdog > 0:
            return [Arm(T_WATCHDOG, self._watchdog)]
        return [Disarm(T_WATCHDOG)] if timeout is not None else []

    def extend(self, delay: float, now: float) -> list[Action]:
        """EXTEND_TIMEOUT_USEC=: the start or stop timeout fires no sooner than `delay` from now."""
        name = T_START if self.state == STARTING else T_STOP if self.state == STOPPING else ""
        if self._deadline is None or self._deadline[0] != name or \
                now + delay <= self._deadline[1]:
            return []
        self._deadline = (name, now + delay)
        return [Arm(name, delay)]

    def main_found(self, pid: int, now: float) -> list[Action]:
        """A forking service's daemon was identified: it is the main process, and up."""
        if self.state != STARTING or self.step:
            return []
        self.pid = pid
        return [Disarm(T_START), *self._ready_then_up(now)]

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
        return [Disarm(T_START), *self._after_exit(now, success=False, leftovers=True)]

    def exited(self, status: ExitStatus, now: float, leftovers: bool = False,
               detail: str | None = None) -> list[Action]:
        """The main process ended; `leftovers`: other processes of the service remain."""
        if self.state not in RUNNING:
            return []
        self.pid = None
        if not (self.state == STOPPING and self._after_stop in ("failure", "watchdog")):
            # Stopping a start that timed out or a hung service: the timeout is the cause.
            self.last_exit = detail or status.describe()
        if self.state == STOPPING:
            if leftovers or self._control:  # what is left (a command too) ends the stop
                return []
            return [Disarm(T_STOP), *self._stopped(now)]
        if self.state not in (STARTING, UP):
            return []
        success, self._cause, self._prevented = outcome.judge(self.config, status)
        if self.config.type == "forking" and self.state == STARTING and status.success:
            return [FindMain()]
        if self.config.type == "oneshot" and self.state == STARTING and success \
                and not self._control:
            if self.config.exec_start_post:
                return [Disarm(T_START), *self._run("exec_start_post", 0, now)]
            if self.config.remain_after_exit:
                return [Disarm(T_START), *self._ready_then_up(now)]
        actions = [Disarm(T_START)] if leftovers else [Disarm(T_START), *self._unwatch()]
        return actions + self._after_exit(now, success, leftovers)

    def gone(self, now: float) -> list[Action]:
        """Every process of the service is gone."""
        if self.state == STOPPING and self.pid is None and not self._control:
            return [Disarm(T_STOP), *self._stopped(now)]
        return []

    def timer(self, name: str, now: float) -> list[Action]:
        """Timer `name` fired."""
        if name == T_BACKOFF and self.state == BACKOFF:
            return self._spawn(now)
        if name == T_STOP and self.state == STOPPING:
            return self._final_kill()
        if name == T_COMMAND:
            return self._command_timer()
        if name == T_START and self.state == STARTING:
            self._cause, self._prevented = "timeout", False
            self.last_exit = f"not ready within {self.config.start_timeout:g}s"
            actions = self._begin_stop(now, self.last_exit)
            self._after_stop = "failure"
            return actions
        if name in (T_WATCHDOG, T_UNHEALTHY) and self.state == UP:
            self.last_exit = name  # unhealthy: `retries` failed health checks, a failure
            self._cause, self._prevented = name, False
            hung = name == T_WATCHDOG
            actions = self._begin_stop(now, name, SIGABRT if hung else 0)
            self._after_stop = "watchdog" if hung else "failure"
            return actions
        return []

    # -- rules -----------------------------------------------------------------------

    def _enter(self, state: str, now: float, reason: str) -> None:
        if state != self.state:
            self.since = now
        self.state = state
        self.reason = reason
        if state == UP:
            self.up_since = now

    def _no_start_after(self, now: float, reason: str) -> list[Action]:
        """A stop in progress ends down; a pending restart is called off: down now."""
        if self.state == STOPPING:
            self._after_stop = "down"
            self.reason = reason
        elif self.state == BACKOFF:
            self._enter(DOWN, now, reason)
            return [Disarm(T_BACKOFF)]
        return []

    def _spawn(self, now: float) -> list[Action]:
        self.starts.append(now)
        self.up_since = None
        self._after_stop = "down"
        self._enter(STARTING, now, "")
        self._watchdog = self.config.watchdog_sec
        self._deadline = None
        self._ran = False
        self.step = ""
        return self._begin_start(now)

    def _unwatch(self) -> list[Action]:
        """Leaving `up`: a watchdog armed for this run must not fire in the next."""
        return [Disarm(T_WATCHDOG)] if self._watchdog > 0 and self.state == UP else []

    def _after_exit(self, now: float, success: bool, leftovers: bool = False) -> list[Action]:
        """The main process is gone without being asked to: clean up, then decide."""
        if leftovers or self._winds_down():
            actions = self._begin_stop(now, f"{self.last_exit}; stopping what it left"
                                       if leftovers else self.last_exit or "")
            self._after_stop = "exit" if success else "failure"
            return actions
        return self._decide(now, success)

    def _decide(self, now: float, success: bool) -> list[Action]:
        config = self.config
        if not self.want:
            self._enter(DOWN, now, "stopped")
            return []
        if success and config.type == "oneshot":
            self._enter(DONE, now, "")
            return []
        if outcome.restarts(config, success, self._cause, self._prevented):
            return self._backoff(now)
        if success:
            # Done with what it was asked to do: nothing may start it again unasked.
            self.want = False
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
