"""Forking-service tracking under a fork storm.

Planned measure: a service that daemonizes (double fork, writes a pidfile) while
another process of the same service forks thousands of short-lived children;
how long until the supervisor knows the real main PID, whether it ever adopts
the wrong one, and its CPU time over the storm, against supervisord (pidproxy),
runit and s6 (which cannot track a daemon that forks away: their figure is
"lost").
"""

NAME = "fork-tracking"
TITLE = "Forking-service tracking under a fork storm"
ORDER = 95
PLANNED = "needs roost's forking-service support (pidfile / MAINPID / cgroup tracking)"
