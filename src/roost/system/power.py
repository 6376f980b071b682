"""The power vocabulary PID 1 understands: the requests, and the signals that mean them.

Kept apart from the client that sends them (poweroff.py): `roost init` needs
only these names, never the client's parser and socket code.
"""

from __future__ import annotations

import _signal

POWEROFF = "poweroff"
REBOOT = "reboot"
HALT = "halt"
KEXEC = "kexec"
KINDS = (POWEROFF, REBOOT, HALT, KEXEC)

SYSTEM_CONTROL = "@roost/control"

RTMIN: int = _signal.SIGRTMIN

# Signals PID 1 takes as requests. busybox's halt/poweroff/reboot send USR1, USR2
# and TERM; systemd's send RTMIN+3/+4/+5 (+6 for kexec); the kernel sends INT on
# Ctrl-Alt-Del (once CAD is routed to init); UPS daemons and LXC send PWR.
SIGNAL_REQUESTS: dict[int, str] = {
    _signal.SIGUSR1: HALT,
    _signal.SIGUSR2: POWEROFF,
    _signal.SIGTERM: REBOOT,
    _signal.SIGPWR: POWEROFF,
    RTMIN + 3: HALT,
    RTMIN + 4: POWEROFF,
    RTMIN + 5: REBOOT,
    RTMIN + 6: KEXEC,
}
CTRL_ALT_DEL = _signal.SIGINT  # mapped by the `ctrl_alt_del` setting (reboot by default)
# What `--via-signal` sends for each request: busybox's choice, which roost shares.
REQUEST_SIGNALS = {HALT: _signal.SIGUSR1, POWEROFF: _signal.SIGUSR2, REBOOT: _signal.SIGTERM,
                   KEXEC: RTMIN + 6}
