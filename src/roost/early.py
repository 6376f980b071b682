"""The first thing roost does: block every signal it will later handle.

For PID 1 the kernel discards a signal that has no handler, and a container
runtime or a `poweroff` may send one in the first milliseconds. A blocked signal
stays pending instead, and is delivered when the reactor installs its handlers
and unblocks it. The `roost` launcher blocks every signal before the interpreter
starts (bin/roost), and then no window is left at all; started any other way, this
module is imported before anything else, so the window in which a signal can be
lost is the interpreter's own start-up and nothing more.
"""

import _signal
import gc
import posix

# Signals the CPU raises for a faulting thread are left alone: blocked, a fault
# would kill the process with no report.
_FAULTS = {
    _signal.SIGSEGV, _signal.SIGBUS, _signal.SIGFPE, _signal.SIGILL,
    _signal.SIGTRAP, _signal.SIGSYS, _signal.SIGABRT,
}

_HANDLED = _signal.valid_signals() - _FAULTS - {_signal.SIGKILL, _signal.SIGSTOP}

# The launcher says so in the environment; taken out before os copies it, so no service
# inherits it. It blocked every signal, the faults too, which must not stay blocked: the
# mask becomes exactly the handled set. What its caller had blocked cannot be told apart
# from what it added; a runtime, a shell or an init blocks nothing before an exec.
LAUNCHER_BLOCKED = posix.environ.pop(b"ROOST_LAUNCHER", None) == b"blocked"
if LAUNCHER_BLOCKED:
    _signal.pthread_sigmask(_signal.SIG_SETMASK, _HANDLED)
    ORIGINAL_MASK: "set[int]" = set()
else:
    ORIGINAL_MASK = _signal.pthread_sigmask(_signal.SIG_BLOCK, _HANDLED)


# Start-up makes only what lives as long as roost (modules, classes, functions), so a
# collection during it finds nothing to free and costs a container start about 60 µs.
# The reactor turns the collector back on when it first runs (kernel/loop.py), a client
# in restore().
gc.disable()


def restore() -> None:
    """Give back what start-up took: the signal mask roost started with, and the collector."""
    _signal.pthread_sigmask(_signal.SIG_SETMASK, ORIGINAL_MASK)
    gc.enable()
