"""How a process ended, and how to say it in words and in an exit code."""

from roost.core import sigs

# In a set of ends (success_exit_status, restart_prevent_exit_status): a signal is
# SIGNAL_BASE + its number, apart from the exit codes 0-255.
SIGNAL_BASE = 256


class ExitStatus:
    """The end of a process: an exit code, or the signal that killed it."""

    __slots__ = ("code", "core", "signal")

    def __init__(self, code: "int | None" = None, signal: "int | None" = None, core: bool = False):
        self.code = code
        self.signal = signal
        self.core = core

    @property
    def success(self) -> bool:
        """True for exit code 0."""
        return self.code == 0

    @property
    def number(self) -> int:
        """The exit code, or SIGNAL_BASE + the signal: what a set of ends holds."""
        return self.code if self.code is not None else SIGNAL_BASE + (self.signal or 0)

    def describe(self) -> str:
        """Say how the process ended: `exited 3`, `killed by SIGSEGV (core dumped)`."""
        if self.code is not None:
            return f"exited {self.code}"
        text = f"killed by {sigs.name(self.signal or 0)}"
        return text + " (core dumped)" if self.core else text

    def shell_code(self) -> int:
        """The code a shell would report: the exit code, or 128+N for signal N."""
        if self.code is not None:
            return self.code
        return 128 + (self.signal or 0)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ExitStatus):
            return NotImplemented
        return (self.code, self.signal, self.core) == (other.code, other.signal, other.core)

    def __hash__(self) -> int:
        return hash((self.code, self.signal, self.core))

    def __repr__(self) -> str:
        return f"ExitStatus({self.describe()!r})"
