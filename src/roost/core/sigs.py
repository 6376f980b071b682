"""Signal names and numbers, without the `signal` module.

`signal` builds its enums at import time, which costs milliseconds a container init
pays on every start; `_signal` is already loaded by the interpreter.
"""

import _signal

# Aliases share a number with a canonical name; prefer the names users know.
_ALIASES = frozenset({"SIGIOT", "SIGPOLL", "SIGCLD"})

RTMIN = _signal.SIGRTMIN
RTMAX = _signal.SIGRTMAX

# Built on first use: the loop over `_signal` is start-up time a container init
# pays on every start, and most runs never name a signal.
_BY_NUMBER: "dict[int, str]" = {}


def _by_number() -> "dict[int, str]":
    if not _BY_NUMBER:
        for key, value in vars(_signal).items():
            if (
                key.startswith("SIG")
                and not key.startswith("SIG_")
                and key not in _ALIASES
                and key not in ("SIGRTMIN", "SIGRTMAX")
                and isinstance(value, int)
            ):
                _BY_NUMBER[value] = key
    return _BY_NUMBER


# Raised by the CPU for the faulting thread; blocking or catching them hides crashes.
SYNCHRONOUS = frozenset(
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

UNCATCHABLE = frozenset({_signal.SIGKILL, _signal.SIGSTOP})

ALL = frozenset(_signal.valid_signals())

CATCHABLE = ALL - UNCATCHABLE - SYNCHRONOUS


def name(signum: int) -> str:
    """Return the conventional name of a signal number (SIGTERM, SIGRTMIN+3)."""
    known = _by_number().get(signum)
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
    for value, known in _by_number().items():
        if known == spec:
            return value
    raise ValueError(f"no such signal: {text}")
