"""Linux system calls the standard library lacks, in one place.

`ctypes` is loaded on first use only: a container init that is PID 1 needs none
of these and should not pay for the import.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ctypes

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
PR_GET_CHILD_SUBREAPER = 37

_libc: ctypes.CDLL | None = None


def libc() -> ctypes.CDLL:
    """The C library, loaded once, with errno captured."""
    global _libc
    if _libc is None:
        import ctypes  # noqa: PLC0415 - deferred: see the module docstring

        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def _check(result: int, what: str) -> int:
    if result < 0:
        import ctypes  # noqa: PLC0415

        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    """Call the prctl system call; raise OSError on failure."""
    import ctypes  # noqa: PLC0415

    fn = libc().prctl
    fn.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    fn.restype = ctypes.c_int
    return _check(fn(option, arg2, arg3, arg4, arg5), "prctl")


def set_child_subreaper() -> None:
    """Make orphaned descendants re-parent to this process (PR_SET_CHILD_SUBREAPER)."""
    prctl(PR_SET_CHILD_SUBREAPER, 1)


def is_child_subreaper() -> bool:
    """True if this process is a child subreaper."""
    import ctypes  # noqa: PLC0415

    flag = ctypes.c_int(0)
    prctl(PR_GET_CHILD_SUBREAPER, ctypes.addressof(flag))
    return bool(flag.value)


def set_pdeathsig(signum: int) -> None:
    """Ask for `signum` when the parent thread dies (PR_SET_PDEATHSIG)."""
    prctl(PR_SET_PDEATHSIG, signum)
