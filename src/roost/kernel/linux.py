"""The machine-wide system calls PID 1 makes that the standard library lacks.

Mounts, reboot, pivot_root, swap, loop devices, the hostname, and signalling every
process. `ctypes` is loaded on first use only; a container init never loads this module.
The process controls every role needs (subreaper, parent-death signal) are in prctl.py.
"""

from __future__ import annotations

import os

from roost.kernel.prctl import checked

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ctypes

_libc: ctypes.CDLL | None = None


def libc() -> ctypes.CDLL:
    """The C library, loaded once, with errno captured."""
    global _libc
    if _libc is None:
        import ctypes  # noqa: PLC0415 - lazy (start-up): see the module docstring

        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


# -- PID 1 only: mounts, reboot, and signalling every process -------------------
#
# Each of these can take a machine down. They refuse to run unless roost is PID 1,
# either of the machine or of a PID namespace of its own; in a namespace they also
# refuse what would reach outside it (superblock remounts, swap, loop devices, the
# Ctrl-Alt-Del switch, a hostname shared with the host). A slip in a test run on a
# developer's machine then fails with NotPid1 instead of unmounting their disks.

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_PRIVATE = 1 << 18
MNT_FORCE = 1
MNT_DETACH = 2
UMOUNT_NOFOLLOW = 8

RB_AUTOBOOT = 0x01234567
RB_HALT_SYSTEM = 0xCDEF0123
RB_POWER_OFF = 0x4321FEDC
RB_KEXEC = 0x45584543
RB_ENABLE_CAD = 0x89ABCDEF
RB_DISABLE_CAD = 0

LOOP_CLR_FD = 0x4C01

# Inode numbers the kernel gives its initial namespaces (include/linux/proc_ns.h).
PROC_PID_INIT_INO = 0xEFFFFFFC
PROC_UTS_INIT_INO = 0xEFFFFFFE
PROC_MNT_INIT_INO = 0xEFFFFFF8  # kernels >= 6.6 (older ones number it dynamically)

_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "armv7l": 218, "i686": 217,
               "ppc64le": 203, "s390x": 217}

MACHINE = "machine"
NAMESPACE = "namespace"


class NotPid1(PermissionError):
    """A machine-wide operation was asked of a roost that may not do it here."""


def _ns_inode(kind: str) -> int | None:
    try:
        return os.stat(f"/proc/self/ns/{kind}").st_ino
    except OSError:
        return None


def pid1_scope() -> str | None:
    """MACHINE for PID 1 of the machine, NAMESPACE for PID 1 of a PID namespace, else None.

    Before /proc is mounted the answer for PID 1 is NAMESPACE, the narrower one:
    only mounting is allowed until the question can be answered.
    """
    if os.getpid() != 1:
        return None
    return MACHINE if _ns_inode("pid") == PROC_PID_INIT_INO else NAMESPACE


def own_mount_namespace() -> bool:
    """True when this process's mounts are its own: /proc shows this PID namespace.

    A namespace's /proc (unshare --mount-proc) needs a mount namespace of its own;
    the host's /proc names this process by its host PID.
    """
    try:
        own_proc = os.readlink("/proc/self") == str(os.getpid())
    except OSError:
        # No /proc at all: a machine (or namespace) whose mounts nobody has set up yet.
        return not os.path.exists("/proc/1")
    return own_proc and _ns_inode("mnt") != PROC_MNT_INIT_INO


def _require(what: str, machine_only: bool = False, mounts: bool = False) -> str:
    scope = pid1_scope()
    if scope is None:
        raise NotPid1(f"{what}: refused, roost is not PID 1 (pid {os.getpid()})")
    if machine_only and scope != MACHINE:
        raise NotPid1(f"{what}: refused, roost is PID 1 of a PID namespace, not of the machine")
    if mounts and scope != MACHINE and not own_mount_namespace():
        raise NotPid1(f"{what}: refused, this PID namespace shares its mounts with the host")
    return scope


def _path(value: str | None) -> bytes | None:
    return None if value is None else os.fsencode(value)


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0,
          data: str | None = None) -> None:
    """Mount a filesystem; a superblock remount is refused in a namespace (it reaches the host)."""
    import ctypes  # noqa: PLC0415 - lazy (start-up): see the module docstring

    superblock = flags & MS_REMOUNT and not flags & MS_BIND
    _require(f"mount {target}", machine_only=bool(superblock), mounts=True)
    fn = libc().mount
    fn.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                   ctypes.c_char_p]
    fn.restype = ctypes.c_int
    checked(fn(_path(source), _path(target), _path(fstype), flags, _path(data)),
           f"mount {target}")


def umount(target: str, flags: int = 0) -> None:
    """Unmount `target` (umount2(2))."""
    import ctypes  # noqa: PLC0415 - lazy (start-up): see the module docstring

    _require(f"umount {target}", mounts=True)
    fn = libc().umount2
    fn.argtypes = [ctypes.c_char_p, ctypes.c_int]
    fn.restype = ctypes.c_int
    checked(fn(_path(target), flags), f"umount {target}")


def pivot_root(new_root: str, put_old: str) -> None:
    """Make `new_root` the root (pivot_root(2)), the old one mounted at `put_old`."""
    import ctypes  # noqa: PLC0415 - lazy (start-up): see the module docstring

    _require("pivot_root", mounts=True)
    number = _PIVOT_ROOT.get(os.uname().machine)
    if number is None:
        raise OSError(38, f"pivot_root: no system call number known for {os.uname().machine}")
    fn = libc().syscall
    fn.restype = ctypes.c_long
    checked(fn(ctypes.c_long(number), _path(new_root), _path(put_old)), "pivot_root")


def reboot(command: int) -> None:
    """Restart, halt or power off; in a PID namespace the kernel ends the namespace instead."""
    import ctypes  # noqa: PLC0415 - lazy (start-up): see the module docstring

    _require("reboot", machine_only=command in (RB_ENABLE_CAD, RB_DISABLE_CAD, RB_KEXEC))
    fn = libc().reboot
    fn.argtypes = [ctypes.c_int]
    fn.restype = ctypes.c_int
    checked(fn(ctypes.c_int(command & 0xFFFFFFFF).value), "reboot")


def swapoff(path: str) -> None:
    """Stop swapping to `path` (machine only: swap is shared by every namespace)."""
    import ctypes  # noqa: PLC0415 - lazy (start-up): see the module docstring

    _require(f"swapoff {path}", machine_only=True)
    fn = libc().swapoff
    fn.argtypes = [ctypes.c_char_p]
    fn.restype = ctypes.c_int
    checked(fn(_path(path)), f"swapoff {path}")


def loop_detach(device: str) -> None:
    """Detach a loop device from its backing file (LOOP_CLR_FD; machine only)."""
    import fcntl  # noqa: PLC0415 - lazy (start-up): one caller

    _require(f"detach {device}", machine_only=True)
    fd = os.open(device, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, LOOP_CLR_FD, 0)
    finally:
        os.close(fd)


def sethostname(name: str) -> None:
    """Set the hostname: the machine's, or a namespace's that has its own UTS namespace."""
    import socket  # noqa: PLC0415 - lazy (start-up): one caller

    scope = _require("sethostname")
    if scope != MACHINE and _ns_inode("uts") in (None, PROC_UTS_INIT_INO):
        raise NotPid1("sethostname: refused, this PID namespace shares its hostname with the host")
    socket.sethostname(name)


def kill_all(signum: int) -> int:
    """Send `signum` to every process but PID 1, from a forked child; return the child's PID.

    The child does the kill(-1) so that PID 1 never waits on a process stuck in
    uninterruptible sleep. The caller reaps the child.
    """
    _require("kill(-1)")
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child only signals and leaves
        try:
            os.kill(-1, signum)
        except BaseException:  # noqa: BLE001 - the child must reach _exit
            os._exit(1)
        os._exit(0)
    return pid
