"""A control request as the commands see it: its checked arguments and its way back.

What every command module shares: the `Host` a command may ask, the argument types a
request may carry (each checked before any command runs), and `LATER`, returned by a
command that replies through its Request once it can.
"""

from __future__ import annotations

from roost.control import protocol
from roost.control.protocol import ProtocolError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Protocol

    from roost.control.server import Connection
    from roost.kernel.loop import Loop
    from roost.supervise.supervisor import Supervisor

    class Host(Protocol):
        """What the control commands may ask of the roost that serves them."""

        pid1: bool
        stopping: bool
        loop: Loop
        supervisor: Supervisor

        @property
        def directory(self) -> str:
            """The configuration directory being supervised."""

        def reload(self) -> dict[str, list[str]]:
            """Read the configuration again and apply it; raise ConfigInvalid if it is not."""

        def shutdown(self, reason: str) -> None:
            """Stop every service in order, then leave."""

    class Serving(Protocol):
        """What a command is run by: the host, once there is one."""

        def serving(self, req: Request) -> Host:
            """The host, or a refusal of `req` while there is none yet."""


# The largest number a request may give: a timer further away than epoll can wait
# (about 24.8 days) would end the reactor, and JSON lets a client send Infinity.
MAX_NUMBER = 1_000_000

# Returned by a command that replies later, through its Request.
LATER = object()


def _boolean(value: object) -> bool:
    return isinstance(value, bool)


def _names(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(n, str) for n in value)


def _seconds(value: object) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and 0 <= value <= MAX_NUMBER)


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_NUMBER


def _timestamp(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value < 2**40


def _signal(value: object) -> bool:
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


# Each argument's one type, whatever command takes it: what it must be, and the test.
ARGUMENTS: dict[str, tuple[str, Callable[[object], bool]]] = {
    "services": ("a list of service names", _names),
    "wait": ("true or false", _boolean),
    "follow": ("true or false", _boolean),
    "force": ("true or false", _boolean),
    "timeout": (f"a number of seconds from 0 to {MAX_NUMBER}", _seconds),
    "lines": (f"an integer from 0 to {MAX_NUMBER}", _count),
    "since": ("a UNIX time", _timestamp),
    "until": ("a UNIX time", _timestamp),
    "signal": ("a signal name or number", _signal),
}


def check_arguments(takes: tuple[str, ...], args: dict[str, object]) -> None:
    """Refuse an argument of the wrong type, naming it; arguments not in `takes` are ignored."""
    for key in takes:
        if key in args:
            what, valid = ARGUMENTS[key]
            if not valid(args[key]):
                raise ProtocolError(protocol.BAD_REQUEST,
                                    f"\"{key}\" must be {what}, not {_shown(args[key])}")


def _shown(value: object) -> str:
    text = protocol.encode({"": value})[4:-2].decode(errors="replace")
    return text if len(text) <= 40 else text[:37] + "..."


class Request:
    """One authorized request: its arguments, and the way back to its client."""

    __slots__ = ("answered", "args", "cmd", "conn", "ident", "later")

    def __init__(self, conn: Connection, ident: object, cmd: str, args: dict[str, object]):
        self.conn = conn
        self.ident = ident
        self.cmd = cmd
        self.args = args
        self.answered = False
        self.later = False  # counted in the connection's `awaiting` until answered

    def reply(self, result: object) -> None:
        """Send the success reply."""
        self._answer(protocol.ok(self.ident, result))

    def fail(self, code: str, message: str) -> None:
        """Send an error reply."""
        self._answer(protocol.error(self.ident, code, message))

    def _answer(self, line: bytes) -> None:
        self.answered = True
        if self.later:
            self.later = False
            self.conn.awaiting -= 1
        self.conn.send(line)

    def names(self, host: Host, required: bool = True, set_aside: bool = False) -> list[str]:
        """The "services" argument, each configured (or, `set_aside`, set aside by an error)."""
        names = self.args.get("services", [])
        assert isinstance(names, list)  # checked by check_arguments
        if required and not names:
            raise ProtocolError(protocol.BAD_REQUEST, "name at least one service")
        supervisor = host.supervisor
        unknown = [n for n in names if n not in supervisor.services
                   and not (set_aside and n in supervisor.broken)]
        if unknown:
            raise ProtocolError(protocol.NO_SUCH_SERVICE,
                                "no such service: " + ", ".join(unknown))
        return list(names)

    def number(self, key: str, default: float) -> float:
        """A numeric argument (its type checked by check_arguments)."""
        value = self.args.get(key, default)
        assert isinstance(value, int | float)
        return value


