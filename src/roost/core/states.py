"""The names a service's machine uses, and what each state means.

States:
  down      not running, and not trying to (stopped, never started, or waiting
            for the order: `reason` says which)
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
  done      a oneshot that exited 0, or a start skipped because a condition was
            not met (no failure: what requires it starts)
"""

from __future__ import annotations

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
T_WATCHDOG = "watchdog"
T_COMMAND = "command"  # a command around the main one (core/commands.py) overran its time
T_UNHEALTHY = "unhealthy"  # no timer of the machine's: the supervisor's health checks fire it

# The random spread of a restart delay, as a fraction of it: services that fail
# together (a shared dependency died) do not all come back in the same instant.
JITTER = 0.2

SIGKILL = 9
# systemd's WatchdogSignal: a hung service dumps core, where cores are kept.
SIGABRT = 6
