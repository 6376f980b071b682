"""Signal names and numbers, without the `signal` module.

`signal` builds its enums at import time, which costs milliseconds a container init
pays on every start; `_signal` is already loaded by the interpreter.
"""

from __future__ import annotations

import _signal

# Aliases share a number with a canonical name; prefer the names users know.
_ALIASES = frozenset({"SIGIOT", "SIGPOLL", "SIGCLD"})

RTMIN: int = _signal.SIGRTMIN
RTMAX: int = _signal.SIGRTMAX

_BY_NUMBER: dict[int, str] = {}
for _name, _value in vars(_signal).items():
    if (
        _name.startswith("SIG")
        and not _name.startswith("SIG_")
        and _name not in _ALIASES
        and _name not in ("SIGRTMIN", "SIGRTMAX")
        and isinstance(_value, int)
    ):
        _BY_NUMBER[_value] = _name

# Raised by the CPU for the faulting thread; blocking or catching them hides crashes.
SYNCHRONOUS: frozenset[int] = frozenset(
    {
        _signal.SIGSEGV,
        _signal.SIGBUS,
        _signal.SIGFPE,
        _signal.SIGILL,
        _signal.SIGTRAP,
        _signal.SIGSYS,
        _signal.SIGABRT,
    }
)

UNCATCHABLE: frozenset[int] = frozenset({_signal.SIGKILL, _signal.SIGSTOP})

ALL: frozenset[int] = frozenset(_signal.valid_signals())

CATCHABLE: frozenset[int] = ALL - UNCATCHABLE - SYNCHRONOUS


def name(signum: int) -> str:
    """Return the conventional name of a signal number (SIGTERM, SIGRTMIN+3)."""
    known = _BY_NUMBER.get(signum)
    if known is not None:
        return known
    if RTMIN <= signum <= RTMAX:
        if signum - RTMIN <= RTMAX - signum:
            return f"SIGRTMIN+{signum - RTMIN}" if signum > RTMIN else "SIGRTMIN"
        return f"SIGRTMAX-{RTMAX - signum}" if signum < RTMAX else "SIGRTMAX"
    return f"signal {signum}"


def number(text: str) -> int:
    """Parse a signal given as a name (TERM, SIGTERM, RTMIN+3) or a number; raise ValueError."""
    spec = text.strip().upper()
    if spec.isdigit():
        value = int(spec)
        if value == 0 or value in ALL:
            return value
        raise ValueError(f"no signal numbered {value}")
    if not spec.startswith("SIG"):
        spec = "SIG" + spec
    for base, anchor, sign in (("SIGRTMIN", RTMIN, 1), ("SIGRTMAX", RTMAX, -1)):
        if spec == base:
            return anchor
        if spec.startswith(base) and spec[len(base)] in "+-":
            offset = spec[len(base) + 1 :]
            if offset.isdigit() and spec[len(base)] == ("+" if sign > 0 else "-"):
                value = anchor + sign * int(offset)
                if RTMIN <= value <= RTMAX:
                    return value
            raise ValueError(f"no such signal: {text}")
    if spec in _ALIASES:
        return int(getattr(_signal, spec))
    for value, known in _BY_NUMBER.items():
        if known == spec:
            return value
    raise ValueError(f"no such signal: {text}")
