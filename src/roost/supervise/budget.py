"""The descriptors a configuration costs roost, against the limit roost runs under.

Every service holds descriptors in roost for as long as it is configured (its log
pipes, its log file, its notify socket) and more while it runs (the child's pidfd
and exec report pipe, the tracker's pidfd on the main process, its cgroup.events,
its notification pipe). Running out midway would leave services half set up, and
every descriptor roost then fails to open is a service that cannot start, a
client that cannot connect or a reload that cannot read. So the worst case is
counted before anything is set up, and a configuration that does not fit is
refused whole, with the numbers.
"""

from __future__ import annotations

import resource

from roost.config.errors import ConfigError, ConfigInvalid

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

    from roost.core.model import ServiceConfig

# roost's own, whatever it supervises: stdio, the epoll fd, the signal wakeup pipe,
# the control sockets, the proc connector's socket or the cgroup root, the console, syslog.
BASE = 24
# Held for moments, or by a bounded few: a spawn's exec report pipe and cgroup.procs,
# a signalling round's pidfds, the configuration reader's pipe, some control clients
# (the control server refuses the others while descriptors are short).
RESERVE = 40
# A running process: the child's pidfd, its exec report pipe, the tracker's pidfd on
# the main process, the cgroup.events of its cgroup.
RUNNING = 4


def per_service(config: ServiceConfig, log_files: bool) -> int:
    """The most descriptors roost holds at once for one service."""
    # The log pipes, both ends, kept across restarts: stdout's, and stderr's unless merged.
    count = (2 if config.stderr == "stdout" else 4) + RUNNING
    count += len(config.sockets)  # what roost listens on for it, kept across restarts
    if log_files:
        count += 1
    if config.type == "notify":
        count += 1  # the notify socket, kept across restarts
        count += config.fd_store_max  # what it stored, kept across restarts
    if config.ready_fd is not None:
        count += 2  # a fresh notification pipe per start, both ends until the child has one
    elif config.ready.startswith("tcp:"):
        count += 1  # a polled connect's socket
    if config.health is not None:
        # One probe at a time: a socket, or a command's output pipe (both ends until it
        # runs), its pidfd and exec report pipe.
        count += 1 if config.health.kind != "command" else 4
    return count


def needed(services: Iterable[ServiceConfig], log_files: bool) -> int:
    """The descriptors roost needs to supervise `services`, its own and a reserve included."""
    return BASE + RESERVE + sum(per_service(s, log_files) for s in services)


def check(directory: str, services: list[ServiceConfig], log_files: bool) -> None:
    """Raise ConfigInvalid, saying by how much, when `services` do not fit under the limit."""
    need = needed(services, log_files)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if need <= soft:
        return
    raise ConfigInvalid([ConfigError(
        directory, f"{len(services)} services need up to {need} file descriptors, more "
        f"than roost may open ({soft}; hard limit {hard}): raise the hard RLIMIT_NOFILE "
        "roost starts with (ulimit -Hn, prlimit) or configure fewer services")])
