"""Checking what a service's process starts with beyond its account: limits, priority, directories.

The vocabulary of systemd's LimitXXX=, Nice=, OOMScoreAdjust= and the *Directory= keys,
each value checked here and converted to what kernel/spawn.py and kernel/dirs.py apply.
Whether roost may grant a limit is asked of the running kernel (kernel/proc.py), so
`roost check` refuses what the start would fail on.
"""

from __future__ import annotations

import resource

from roost.config.check import shown
from roost.core.model import DIRECTORY_KINDS
from roost.kernel import proc

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# systemd's LimitXXX= names, lower-cased, and the resource each sets.
LIMITS = {
    "as": resource.RLIMIT_AS, "core": resource.RLIMIT_CORE, "cpu": resource.RLIMIT_CPU,
    "data": resource.RLIMIT_DATA, "fsize": resource.RLIMIT_FSIZE,
    "locks": 10,  # RLIMIT_LOCKS, which the resource module does not name
    "memlock": resource.RLIMIT_MEMLOCK,
    "msgqueue": resource.RLIMIT_MSGQUEUE, "nice": resource.RLIMIT_NICE,
    "nofile": resource.RLIMIT_NOFILE, "nproc": resource.RLIMIT_NPROC,
    "rss": resource.RLIMIT_RSS, "rtprio": resource.RLIMIT_RTPRIO,
    "rttime": resource.RLIMIT_RTTIME, "sigpending": resource.RLIMIT_SIGPENDING,
    "stack": resource.RLIMIT_STACK,
}
INFINITY = resource.RLIM_INFINITY
MAX_LIMIT = (1 << 63) - 1
CAP_SYS_RESOURCE = 24  # what raising a hard limit above one's own takes


def limits(value: Any) -> dict[str, list[int]]:
    """`limits = { nofile = 65535, core = "infinity", nproc = "512:4096" }`.

    Each becomes (resource, soft, hard), so that applying it needs no table of names.
    """
    if not isinstance(value, dict):
        raise ValueError(f"expected a table like {{ nofile = 65535 }}, got {shown(value)}")
    result = {}
    may_raise = proc.has_capability(CAP_SYS_RESOURCE)
    for name, given in value.items():
        if name not in LIMITS:
            raise ValueError(f"{shown(name)}: not a limit (one of {', '.join(sorted(LIMITS))})")
        soft, hard = _pair(name, given)
        if soft > hard:
            raise ValueError(f"{name}: the soft limit {soft} is above the hard limit {hard}")
        own = resource.getrlimit(LIMITS[name])[1]
        if not may_raise and _above(hard, own):
            raise ValueError(f"{name}: {_text(hard)} is above roost's own hard limit "
                             f"({_text(own)}), which it may not raise (no CAP_SYS_RESOURCE)")
        result[name] = [LIMITS[name], soft, hard]  # lists: what the reader's JSON gives back
    return result


def _pair(name: str, given: Any) -> tuple[int, int]:
    """One limit, `N`, `"infinity"` or `"SOFT:HARD"`, as (soft, hard); systemd's forms."""
    if isinstance(given, str) and ":" in given:
        soft_text, _, hard_text = given.partition(":")
        return _one(name, soft_text), _one(name, hard_text)
    one = _one(name, given)
    return one, one


def _one(name: str, given: Any) -> int:
    if given == "infinity":
        return INFINITY
    if isinstance(given, str) and given.isascii() and given.isdigit():
        given = int(given)
    if isinstance(given, bool) or not isinstance(given, int) or not 0 <= given <= MAX_LIMIT:
        raise ValueError(f"{name}: expected a number from 0 to {MAX_LIMIT} or \"infinity\", "
                         f"got {shown(given)}")
    return given


def _above(limit: int, own: int) -> bool:
    if own == INFINITY:
        return False
    return limit == INFINITY or limit > own


def _text(limit: int) -> str:
    return "infinity" if limit == INFINITY else str(limit)


def nice(value: Any) -> int:
    """`nice`, -20 (first) to 19 (last), as setpriority(2) takes it."""
    if isinstance(value, bool) or not isinstance(value, int) or not -20 <= value <= 19:
        raise ValueError(f"expected an integer from -20 to 19, got {shown(value)}")
    return value


def oom_score_adjust(value: Any) -> int:
    """`oom_score_adjust`, -1000 (never killed) to 1000 (killed first)."""
    if isinstance(value, bool) or not isinstance(value, int) or not -1000 <= value <= 1000:
        raise ValueError(f"expected an integer from -1000 to 1000, got {shown(value)}")
    return value


def directories(value: Any) -> list[str]:
    """A `*_directory` key: one relative path or a list, each below its base (/run, ...)."""
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not names:
        raise ValueError(f"expected a relative path or a list of them, got {shown(value)}")
    result = []
    for name in names:
        if not isinstance(name, str):
            raise ValueError(f"expected a relative path, got {shown(name)}")
        parts = [p for p in name.split("/") if p not in ("", ".")]
        if name.startswith("/") or not parts or ".." in parts or "\0" in name:
            raise ValueError(f"{shown(name)}: a path below the directory's base, without '..'")
        result.append("/".join(parts))
    return result


def mode(value: Any) -> int:
    """A `*_directory_mode`: an octal string like "0750" (setgid and sticky bits too)."""
    if isinstance(value, str) and value and len(value) <= 5 and \
            all(c in "01234567" for c in value):
        number = int(value, 8)
        if number <= 0o7777:
            return number
    raise ValueError(f"expected an octal mode like \"0755\", got {shown(value)}")


def preserve(value: Any) -> bool | str:
    """`runtime_directory_preserve`: false (removed at every stop), true, or "restart"."""
    if isinstance(value, bool):
        return value
    if value == "restart":
        return "restart"
    raise ValueError(f"expected true, false or \"restart\", got {shown(value)}")


DIRECTORY_KEYS = {f"{kind}_directory{suffix}" for kind in DIRECTORY_KINDS
                  for suffix in ("", "_mode")}
# Every key of this module, with its checker.
KEYS = {"limits": limits, "nice": nice, "oom_score_adjust": oom_score_adjust,
        "runtime_directory_preserve": preserve,
        **{f"{kind}_directory": directories for kind in DIRECTORY_KINDS},
        **{f"{kind}_directory_mode": mode for kind in DIRECTORY_KINDS}}
