"""The commands around a service's main one: which runs now, and what its end leads to.

systemd's order, which is what the unit files people bring expect:

  start     conditions, exec_condition, exec_start_pre, the main command; once
            that is ready, exec_start_post; only then is the service up (a
            oneshot's exec_start_post runs once its command exited 0).
  reload    exec_reload, one command after another, while the service stays up.
  stop      exec_stop (only for a run that was up), the stop signal to what is
            left, then exec_stop_post once every process is gone (for any run in
            which a command ran, a failed start too). A main process that ends
            on its own goes the same way before the restart policy decides.

One command runs at a time (`step` names its list, `_index` its place). Each has
a time of its own: `start_timeout` for the start's and exec_reload, `stop_timeout`
for the stop's (0: no limit); once over, it is killed, and that is a failure
even with the "-" prefix. A failing exec_condition (1 to 254) skips the start as
an unmet condition does; any other failure of a start's command fails the
start; a failing exec_reload leaves the service up, and says so in its reason;
a failing exec_stop or exec_stop_post is shown and the stop goes on. A stop that
comes while a command of the start or a reload runs cuts it short (the stop
signal to its process group) and skips exec_stop.

Commands are roost's own children, not members of the service: they are ended
through their own process group, and a stop waits for them as for the rest.
"""

from __future__ import annotations

from roost.core.actions import Arm, Check, Disarm, Kill, KillCommand, RunCommand, Spawn
from roost.core.states import (
    DONE,
    DOWN,
    FAILED,
    SIGKILL,
    STARTING,
    STOPPING,
    T_COMMAND,
    T_START,
    T_STOP,
    UP,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from roost.core.actions import Action
    from roost.core.exits import ExitStatus
    from roost.core.model import ServiceConfig

_STOP_KEYS = ("exec_stop", "exec_stop_post")
# A start's first commands, before the main one: the run begins with the first of them.
FIRST = ("exec_condition", "exec_start_pre")


class Commands:
    """The part of a service's machine that runs the commands around its main one, and stops."""

    # The state of a run that the machine shares with these rules (set in Machine.__init__).
    __slots__ = ("_after_stop", "_cause", "_control", "_deadline", "_index", "_prevented",
                 "_ran", "_timed_out", "last_exit", "reason", "step")

    if TYPE_CHECKING:
        # What the machine (core/machine.py) holds and does, used here.
        _after_stop: str
        _cause: str
        _control: bool
        _deadline: tuple[str, float] | None
        _index: int
        _prevented: bool
        _ran: bool
        _timed_out: bool
        last_exit: str | None
        reason: str
        step: str
        config: ServiceConfig
        state: str
        want: bool
        pid: int | None
        up_since: float | None

        def _enter(self, state: str, now: float, reason: str) -> None: ...
        def _after_exit(self, now: float, success: bool,
                        leftovers: bool = False) -> list[Action]: ...
        def _spawn(self, now: float) -> list[Action]: ...
        def _decide(self, now: float, success: bool) -> list[Action]: ...
        def _unwatch(self) -> list[Action]: ...
        def keepalive(self, now: float, timeout: float | None = None) -> list[Action]:
            """The machine's own (core/machine.py)."""

    @property
    def command_number(self) -> int:
        """The place (from 1) in its list of the command that runs, as `roost status` shows it."""
        return self._index + 1

    # -- events ----------------------------------------------------------------------

    def checked(self, now: float) -> list[Action]:
        """The start's conditions are met: its commands, then the main one."""
        if self.state != STARTING or self.step != "conditions":
            return []
        self.step = ""
        return self._first_command(now)

    def reload(self, now: float) -> list[Action]:
        """Run exec_reload (asks for nothing unless up, with exec_reload, no command running)."""
        if self.state != UP or self._control or not self.config.exec_reload:
            return []
        return self._run("exec_reload", 0, now)

    def command_exited(self, status: ExitStatus, now: float,
                       detail: str | None = None) -> list[Action]:
        """The command RunCommand started ended; `detail`: why it could not start at all."""
        if not self._control:
            return []
        self._control = False
        key, index = self.step, self._index
        self.step = ""
        commands = getattr(self.config, key)
        flags = commands[index][0] if index < len(commands) else ""
        timed_out, self._timed_out = self._timed_out, False
        limit = self.config.stop_timeout if key in _STOP_KEYS else self.config.start_timeout
        what = f"{key} {index + 1}: " + (f"not done within {limit:g}s" if timed_out
                                         else detail or status.describe())
        failed = (timed_out or detail is not None or not status.success) and \
            (timed_out or "-" not in flags)
        more = not failed and index + 1 < len(commands)
        actions: list[Action] = [Disarm(T_COMMAND)]
        if self.state == STARTING:
            cause = "timeout" if timed_out else "signal" if status.signal else "code"
            return actions + self._start_went_on(key, what, status, cause if failed else "",
                                                 more, now)
        if self.state == UP:  # exec_reload
            if more:
                return actions + self._run(key, index + 1, now)
            self.reason = f"reload failed: {what}" if failed else ""
            return actions
        if self.state == STOPPING and key in _STOP_KEYS:
            if failed:
                self.reason = f"{self.reason}; {what}" if self.reason else what
            if more:
                return actions + self._run(key, index + 1, now)
            return actions + (self._kill_phase(now) if key == "exec_stop" else self._stopped(now))
        # A command of the start, or a reload, cut short by the stop: nothing follows from it.
        return actions

    # -- rules -----------------------------------------------------------------------

    def _begin_stop(self, now: float, reason: str, signal: int = 0) -> list[Action]:
        """Stop this run: exec_stop if it was up, else the stop signal (`signal` instead)."""
        unwatch = self._unwatch()
        self._enter(STOPPING, now, reason)
        actions: list[Action] = [Disarm(T_START), *unwatch]
        if self._control:  # a command of the start, or a reload: cut short
            actions += [Disarm(T_COMMAND), KillCommand(self.config.stop_signal)]
        elif not signal and self.config.exec_stop and self.up_since is not None:
            return [*actions, *self._run("exec_stop", 0, now)]
        return [*actions, *self._kill_phase(now, signal)]

    def _kill_phase(self, now: float, signal: int = 0) -> list[Action]:
        """The stop signal (to whom kill_mode says), and the time the service has to go."""
        config = self.config
        # stop_timeout = 0 is no limit, as start_timeout = 0 and systemd's TimeoutStopSec=0.
        self._deadline = (T_STOP, now + config.stop_timeout) if config.stop_timeout else None
        kill: list[Action] = [Kill(signal or config.stop_signal,
                                   main_only=config.kill_mode != "control-group")]
        return [*kill, Arm(T_STOP, config.stop_timeout)] if config.stop_timeout else kill

    def _final_kill(self) -> list[Action]:
        """stop_timeout is over: final_kill_signal, unless send_sigkill = false."""
        config = self.config
        self._deadline = None
        late = f"did not stop within {config.stop_timeout:g}s"
        if not config.send_sigkill:
            self.reason = f"{late}; send_sigkill = false: waiting for it to end"
            return []
        self.reason = f"{late}: killed"
        kill: list[Action] = [Kill(config.final_kill_signal,
                                   main_only=config.kill_mode == "process")]
        return [*kill, KillCommand(SIGKILL)] if self._control else kill

    def _stopped(self, now: float) -> list[Action]:
        """Every process is gone: exec_stop_post if owed, then where the stop leads."""
        if self._ran and self.config.exec_stop_post:
            self._ran = False
            return self._run("exec_stop_post", 0, now)
        after = self._after_stop
        self._after_stop = "down"
        if after == "restart":
            return self._spawn(now)
        if after == "exit":
            return self._decide(now, success=True)
        if after in ("failure", "watchdog"):  # its cause was recorded by the timer
            return self._decide(now, success=False)
        if after == "failed" and self.want:  # could not start: not retried
            self._enter(FAILED, now, self.last_exit or "failed")
            return []
        self._enter(DOWN, now, self.reason if self.reason != "restarting" else "stopped")
        return []


    def _start_went_on(self, key: str, what: str, status: ExitStatus, failure: str,
                       more: bool, now: float) -> list[Action]:
        """A command of the start ended: the next, the main one, up; `failure`: its cause."""
        if failure:
            if key == "exec_condition" and status.code is not None and 1 <= status.code <= 254:
                # systemd's rule: 1 to 254 means "do not start", 255 or a signal a failure.
                self._enter(DONE if self.want else DOWN, now, f"skipped: {what}")
                return [Disarm(T_START)]
            self.last_exit = what
            self._cause, self._prevented = failure, False
            if self.pid is not None:  # exec_start_post, beside a running main process
                actions = self._begin_stop(now, what)
                self._after_stop = "failure"
                return actions
            return self._after_exit(now, success=False)
        if more:
            return self._run(key, self._index + 1, now)
        if key == "exec_condition":
            return self._pre_or_main(now)
        if key == "exec_start_pre":
            return self._spawn_main(now)
        if self.config.type == "oneshot" and not self.config.remain_after_exit:
            return self._after_exit(now, success=True)  # its exec_start_post, after its exit 0
        self._enter(UP, now, "")
        return self.keepalive(now)

    def _begin_start(self, now: float) -> list[Action]:
        """The first move of a start: its conditions looked at, or its first command."""
        if self.config.conditions:
            self.step = "conditions"
            return [Check()]
        return self._first_command(now)

    def _first_command(self, now: float) -> list[Action]:
        if self.config.exec_condition:
            return self._run("exec_condition", 0, now)
        return self._pre_or_main(now)

    def _pre_or_main(self, now: float) -> list[Action]:
        if self.config.exec_start_pre:
            return self._run("exec_start_pre", 0, now)
        return self._spawn_main(now)

    def _spawn_main(self, now: float) -> list[Action]:
        self._ran = True
        actions: list[Action] = []
        # The timer is armed before the spawn: a spawn that fails at once disarms it.
        if self.config.ready != "exec" and self.config.start_timeout > 0:
            self._deadline = (T_START, now + self.config.start_timeout)
            actions.append(Arm(T_START, self.config.start_timeout))
        actions.append(Spawn())
        return actions

    def _ready_then_up(self, now: float) -> list[Action]:
        """The main command is ready: exec_start_post first, if any, then up."""
        if self.config.exec_start_post:
            return self._run("exec_start_post", 0, now)
        self._enter(UP, now, "")
        return self.keepalive(now)

    def _run(self, key: str, index: int, now: float) -> list[Action]:
        self.step, self._index, self._control = key, index, True
        if key in FIRST:
            self._ran = True  # exec_stop_post is owed from here on
        limit = self.config.stop_timeout if key in _STOP_KEYS else self.config.start_timeout
        run: list[Action] = [RunCommand(key, index)]
        return [Arm(T_COMMAND, limit), *run] if limit > 0 else run

    def _command_timer(self) -> list[Action]:
        """The running command overran its time: killed, and its end is a failure."""
        if not self._control:
            return []
        self._timed_out = True
        return [KillCommand(SIGKILL)]

    def _winds_down(self) -> bool:
        """Whether the end of this run has commands to run: exec_stop, exec_stop_post."""
        return self._control or bool(self.config.exec_stop and self.up_since is not None) or \
            bool(self.config.exec_stop_post and self._ran)
