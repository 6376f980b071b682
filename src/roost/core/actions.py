"""What a service's machine asks the supervisor to do: the actions, and their shape.

Each is a plain value; the supervisor carries it out and answers with the
machine's events (core/machine.py says which answers each expects).
"""

from __future__ import annotations


class Step:
    """A value shown as its class and fields: an action, or a move of the order."""

    __slots__: tuple[str, ...] = ()

    def __repr__(self) -> str:
        fields = ", ".join(repr(getattr(self, name)) for name in self.__slots__)
        return f"{type(self).__name__}({fields})"


class Spawn(Step):
    """Start the service's command; answer with spawned() or spawn_failed()."""

    __slots__ = ()


class Check(Step):
    """Look at the start's conditions; answer with checked(), skipped() or spawn_failed()."""

    __slots__ = ()


class RunCommand(Step):
    """Run command `index` of the list `key` (exec_start_pre...); answer with command_exited()."""

    __slots__ = ("index", "key")

    def __init__(self, key: str, index: int):
        self.key = key
        self.index = index


class KillCommand(Step):
    """Send `signal` to the process group of the command RunCommand started, if it runs."""

    __slots__ = ("signal",)

    def __init__(self, signal: int):
        self.signal = signal


class Kill(Step):
    """Send `signal` to every process of the service, or to its main process only."""

    __slots__ = ("main_only", "signal")

    def __init__(self, signal: int, main_only: bool = False):
        self.signal = signal
        self.main_only = main_only

    def __repr__(self) -> str:
        return f"Kill({self.signal}{', main only' if self.main_only else ''})"


class Arm(Step):
    """Arm timer `name` to fire after `delay` seconds, replacing one of the same name."""

    __slots__ = ("delay", "name")

    def __init__(self, name: str, delay: float):
        self.name = name
        self.delay = delay

    def __repr__(self) -> str:
        return f"Arm({self.name!r}, {self.delay:.3f})"


class Disarm(Step):
    """Cancel timer `name` if armed."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name


class FindMain(Step):
    """A forking launcher exited 0: find the daemon; answer with main_found() or main_missing()."""

    __slots__ = ()


Action = Spawn | Kill | Arm | Disarm | FindMain | Check | RunCommand | KillCommand
