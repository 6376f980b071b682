"""Every move a service's machine can make, as a state x event table (s6-supervise's idea).

An event in a state with no row here changes nothing. docs/supervisor.md's
transition table is rendered from these rows (table()), and
tests/unit/test_machine_table.py holds the machine to them both ways: every row
is witnessed, and no event moves a machine in a way no row allows.
"""

from __future__ import annotations

from roost.core.machine import BACKOFF, DONE, DOWN, FAILED, STARTING, STOPPING, UP


class Transition:
    """One row of TABLE: `event` in one of `sources` may lead to one of `targets`.

    `event` names a method of Machine; a timer's event names the timer too
    ("timer:stop"). `text` is what the docs say of it.
    """

    __slots__ = ("event", "sources", "targets", "text")

    def __init__(self, event: str, sources: tuple[str, ...], targets: tuple[str, ...],
                 text: str):
        self.event = event
        self.sources = sources
        self.targets = targets
        self.text = text


TABLE = (
    Transition("start", (DOWN, FAILED, DONE), (STARTING,),
               "start (once its dependencies allow)"),
    Transition("start", (BACKOFF,), (STARTING,), "start: no more waiting"),
    Transition("start", (STOPPING,), (STOPPING,), "start: starts again once stopped"),
    Transition("spawn_failed", (STARTING, UP), (FAILED, DOWN),
               "the command cannot be started"),
    Transition("spawn_failed", (STARTING, UP), (STOPPING,),
               "the command cannot be started, after commands of the start ran: "
               "`exec_stop_post`, then failed"),
    Transition("skipped", (STARTING,), (DONE, DOWN),
               "a condition of the start is not met: nothing runs, no failure"),
    Transition("checked", (STARTING,), (STARTING,),
               "its conditions are met: its first command, or the main one, is started"),
    Transition("exec_done", (STARTING,), (UP, STARTING),
               "the exec succeeded (`simple`): up, or `exec_start_post` first"),
    Transition("ready", (STARTING,), (UP, STARTING),
               "ready: a newline on the fd, `READY=1` (then `exec_start_post`, if any)"),
    Transition("command_exited", (STARTING,), (STARTING, UP, DONE, DOWN, STOPPING, BACKOFF,
                                               FAILED),
               "a command of the start ended: the next, the main one, or up (a oneshot: "
               "done); `exec_condition` 1 to 254 skips it; a failure fails the start"),
    Transition("command_exited", (UP,), (UP,),
               "an `exec_reload` command ended: the next, or the reload is over"),
    Transition("command_exited", (STOPPING,), (STOPPING, DOWN, STARTING, BACKOFF, FAILED, DONE),
               "a command of the stop ended: the next; after `exec_stop`, the stop signal; "
               "after `exec_stop_post`, down, started again, or by the policy"),
    Transition("reload", (UP,), (UP,), "reload: `exec_reload` runs, the service stays up"),
    Transition("timer:command", (STARTING, UP, STOPPING), (STARTING, UP, STOPPING),
               "a command around the main one overran its time: it is killed, a failure"),
    Transition("exited", (STARTING,), (STARTING,),
               "a forking launcher exits 0: its daemon is looked for (a oneshot's: "
               "`exec_start_post`)"),
    Transition("main_found", (STARTING,), (UP, STARTING),
               "a forking service's daemon is found (then `exec_start_post`, if any)"),
    Transition("main_missing", (STARTING,), (STOPPING,),
               "a forking launcher exits 0 and no daemon can be named"),
    Transition("timer:start", (STARTING,), (STOPPING,),
               "not ready within `start_timeout`: stopped, then as a failure"),
    Transition("extend", (STARTING,), (STARTING,),
               "`EXTEND_TIMEOUT_USEC=N`: the start timeout fires N µs from now at the earliest"),
    Transition("keepalive", (UP,), (UP,),
               "`WATCHDOG=1` (or `WATCHDOG_USEC=`): the watchdog starts over"),
    Transition("timer:watchdog", (UP,), (STOPPING,),
               "no `WATCHDOG=1` within `watchdog_sec`, or `WATCHDOG=trigger`: SIGABRT, "
               "then as a failure (`on-watchdog` restarts it)"),
    Transition("timer:unhealthy", (UP,), (STOPPING,),
               "`retries` health checks in a row failed: stopped, then as a failure"),
    Transition("stop", (STARTING, UP), (STOPPING,), "stop (once what is ordered after it stopped)"),
    Transition("restart", (STARTING, UP), (STOPPING,), "restart: stopped, then started"),
    Transition("hold", (STARTING, UP), (STOPPING,),
               "a requirement failed: stopped, still wanted"),
    Transition("exited", (STARTING, UP), (BACKOFF, DOWN, FAILED, DONE),
               "the main process exits, nothing left: by the restart policy (`failed` "
               "once `restart_limit` starts fell within `restart_window`)"),
    Transition("exited", (STARTING,), (UP,),
               "a oneshot with `remain_after_exit` exits 0: up, with no process"),
    Transition("exited", (STARTING, UP), (STOPPING,),
               "the main process exits and leaves others, or `exec_stop` and "
               "`exec_stop_post` are owed: they come first"),
    Transition("exited", (STOPPING,), (DOWN, STARTING, BACKOFF, FAILED, DONE),
               "the main process exits, nothing left: down, or started again "
               "(restart), or by the policy (after a crash)"),
    Transition("exited", (STOPPING,), (STOPPING,),
               "the main process exits, nothing left: `exec_stop_post` runs first"),
    Transition("gone", (STOPPING,), (DOWN, STARTING, BACKOFF, FAILED, DONE),
               "the last of its processes is gone: as above"),
    Transition("gone", (STOPPING,), (STOPPING,),
               "the last of its processes is gone: `exec_stop_post` runs first"),
    Transition("spawn_failed", (STOPPING,), (DOWN, STARTING, BACKOFF, FAILED, DONE),
               "the command of a stopping service could not start: as above"),
    Transition("spawn_failed", (STOPPING,), (STOPPING,),
               "the command of a stopping service could not start: `exec_stop_post` first"),
    Transition("timer:stop", (STOPPING,), (STOPPING,),
               "`stop_timeout` passes: every process is sent SIGKILL"),
    Transition("extend", (STOPPING,), (STOPPING,),
               "`EXTEND_TIMEOUT_USEC=N`: the stop timeout fires N µs from now at the earliest"),
    Transition("timer:backoff", (BACKOFF,), (STARTING,), "the restart delay passes"),
    Transition("stop", (BACKOFF, FAILED, DONE), (DOWN,),
               "stop: nothing of it runs, a pending restart is cancelled"),
    Transition("want_down", (BACKOFF, FAILED, DONE), (DOWN,),
               "asked down, before its turn to stop: as it runs nothing, at once"),
    Transition("hold", (BACKOFF,), (DOWN,), "a requirement failed: no restart, still wanted"),
    Transition("restart", (DOWN, FAILED, DONE), (STARTING,), "restart: as start"),
    Transition("restart", (BACKOFF,), (STARTING,), "restart: as start"),
    Transition("restart", (STOPPING,), (STOPPING,), "restart: as start"),
    Transition("want_up", (FAILED, DONE), (DOWN,),
               "start asked again: the failure or the finished run is forgotten"),
)


def table() -> str:
    """TABLE as the Markdown table of docs/supervisor.md (from, event, to)."""
    rows = ["| from | event | to |", "| --- | --- | --- |"]
    for row in TABLE:
        sources = ", ".join(f"`{s}`" for s in row.sources)
        targets = ", ".join(f"`{s}`" for s in row.targets)
        rows.append(f"| {sources} | {row.text} | {targets} |")
    return "\n".join(rows)
