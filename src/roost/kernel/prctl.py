"""The process controls every role needs: subreaper, parent-death signal, no new privileges.

A container init that is not PID 1 calls this on every start, so it is built on
`_ctypes` alone, and its annotations are strings, as on all of the container path
(docs/DESIGN.md, Import cost).
"""

import posix

from roost.kernel import console

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38


def checked(result: int, what: str) -> int:
    """Return a C call's result, or raise OSError with the errno it left."""
    if result < 0:
        import _ctypes  # noqa: PLC0415 - lazy (start-up): errno as saved at the call

        err = _ctypes.get_errno()
        raise OSError(err, f"{what}: {posix.strerror(err)}")
    return result


_prctl: "Callable[..., int] | None" = None


def _prctl_function() -> "Callable[..., int]":
    """prctl(2) built on `_ctypes` alone.

    `import ctypes` costs about 4 ms, most of a container init's own start-up when
    it is not PID 1 and must become a subreaper; the C module underneath costs 0.6.
    These are the same few definitions ctypes makes for c_int and c_ulong.
    """
    global _prctl
    if _prctl is None:
        import _ctypes  # noqa: PLC0415 - lazy (start-up): see the docstring

        class Int(_ctypes._SimpleCData):  # type: ignore[type-arg]
            _type_ = "i"

        class ULong(_ctypes._SimpleCData):  # type: ignore[type-arg]
            _type_ = "L"

        class Function(_ctypes.CFuncPtr):
            _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
            _restype_ = Int

        this_process = _ctypes.dlopen(None, posix.RTLD_NOW)  # type: ignore[arg-type]
        function = Function(_ctypes.dlsym(this_process, "prctl"))
        function.argtypes = (Int, ULong, ULong, ULong, ULong)
        _prctl = function
    return _prctl


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    """Call the prctl system call; raise OSError on failure."""
    return checked(_prctl_function()(option, arg2, arg3, arg4, arg5), "prctl")


def become_subreaper(otherwise: str) -> None:
    """Make orphaned descendants re-parent to this process, or warn that `otherwise`."""
    try:
        prctl(PR_SET_CHILD_SUBREAPER, 1)
    except OSError as exc:
        console.say(f"warning: cannot become a child subreaper ({exc.strerror}); {otherwise}")


def set_pdeathsig(signum: int) -> None:
    """Ask for `signum` when the parent thread dies (PR_SET_PDEATHSIG)."""
    prctl(PR_SET_PDEATHSIG, signum)


def set_no_new_privs() -> None:
    """Make execve never grant privileges again (setuid bits, file capabilities), for good."""
    prctl(PR_SET_NO_NEW_PRIVS, 1)
