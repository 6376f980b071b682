#!/usr/bin/env python3
"""Placeholder PID 1 that exercises the roost VM harness on a real kernel.

It reports what it sees as verdict lines, then ends the machine the way the kernel command
line asks (``roost.vmtest=``):

* ``clean`` (default): a correct shutdown, then power-off.  On a plain disk root that is a
  read-only remount.  On a loop-mounted root whose backing file lives on /outer it is the full
  dance: copy the running interpreter into a tmpfs, pivot_root into it, re-exec from there,
  unmount the old root, detach the loop device, unmount /outer, then reboot(2).
* ``dirty``: write a file and power off with everything still mounted read-write.
* ``reboot``: restart on the first boot (counted in /var/lib/roost-vm/boots), power off on
  the second.
* ``halt``: clean shutdown, then halt (the machine stays on until the host stops it).
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import say

libc = ctypes.CDLL(None, use_errno=True)

MS_RDONLY = 1
MS_REMOUNT = 32
MS_MOVE = 8192
MS_REC = 16384
MS_PRIVATE = 1 << 18
LOOP_CLR_FD = 0x4C01
SYS_PIVOT_ROOT = 155
REBOOT_CMD = {"poweroff": 0x4321FEDC, "reboot": 0x01234567, "halt": 0xCDEF0123}
STATE = "/var/lib/roost-vm"
FINALE_ROOT = "/run/finale"


def _bytes(value: str | None) -> bytes | None:
    return None if value is None else value.encode()


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0,
          data: str | None = None) -> None:
    """mount(2)."""
    _check(libc.mount(_bytes(source), _bytes(target), _bytes(fstype), ctypes.c_ulong(flags),
                      _bytes(data)), f"mount {target}")


def umount(target: str, flags: int = 0) -> None:
    """umount2(2)."""
    _check(libc.umount2(_bytes(target), flags), f"umount {target}")


def reboot(kind: str) -> None:
    """reboot(2); returns only if the kernel refused."""
    libc.reboot(ctypes.c_int(REBOOT_CMD[kind]))
    err = ctypes.get_errno()
    say.say("error", f"reboot({kind}) failed: {os.strerror(err)}")


def mounts() -> list[tuple[str, str, str, str]]:
    """(target, fstype, source, options) for every mount, in mount order."""
    result = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields, tail = left.split(), right.split()
            target = fields[4].replace("\\040", " ")
            result.append((target, tail[0], tail[1], fields[5]))
    return result


def mount_of(path: str) -> tuple[str, str, str, str] | None:
    """The mount on top at ``path``, if ``path`` is a mount point."""
    found = [m for m in mounts() if m[0] == path]
    return found[-1] if found else None


def cmdline_arg(name: str, default: str) -> str:
    """A ``name=value`` argument of the kernel command line."""
    with open("/proc/cmdline") as f:
        for arg in f.read().split():
            if arg.startswith(name + "="):
                return arg.split("=", 1)[1]
    return default


def count_boot() -> int:
    """Increment and return the boot counter kept on the root filesystem."""
    os.makedirs(STATE, exist_ok=True)
    path = f"{STATE}/boots"
    try:
        with open(path) as f:
            count = int(f.read().strip() or 0) + 1
    except FileNotFoundError:
        count = 1
    with open(path, "w") as f:
        f.write(f"{count}\n")
        f.flush()
        os.fsync(f.fileno())
    return count


def running_files() -> set[str]:
    """Every file this process runs from: mapped ELF objects and imported modules."""
    paths = set()
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split(maxsplit=5)
            if len(parts) == 6 and parts[5].startswith("/") and "(deleted)" not in parts[5]:
                paths.add(parts[5].strip())
    for module in list(sys.modules.values()):
        for attr in ("__file__", "__cached__"):
            path = getattr(module, attr, None)
            if isinstance(path, str) and os.path.isfile(path):
                paths.add(os.path.abspath(path))
    # getpath finds the prefix by this landmark even though os itself is frozen.
    paths.add(os.path.join(sys.prefix, "lib", f"python{sys.version_info[0]}.{sys.version_info[1]}",
                           "os.py"))
    return {p for p in paths if os.path.isfile(p)}


def enter_finale(kind: str, loopdev: str) -> None:
    """Move PID 1 onto a tmpfs holding a copy of itself, so the old root can be unmounted."""
    os.makedirs(FINALE_ROOT, exist_ok=True)
    mount("tmpfs", FINALE_ROOT, "tmpfs", 0, "mode=0755")
    files = running_files()
    size = 0
    for path in sorted(files):
        dest = FINALE_ROOT + path
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        shutil.copy2(path, dest)  # mtime kept: the copied .pyc stay valid
        size += os.path.getsize(path)
    say.say("finale-copied", len(files), f"{size // 1024}KiB")
    for d in ("dev", "proc", "oldroot", "outer"):
        os.makedirs(f"{FINALE_ROOT}/{d}", exist_ok=True)
    mount(None, "/", None, MS_REC | MS_PRIVATE)  # pivot_root refuses shared mounts
    mount("/dev", f"{FINALE_ROOT}/dev", None, MS_MOVE)
    os.chdir(FINALE_ROOT)
    _check(libc.syscall(SYS_PIVOT_ROOT, b".", b"oldroot"), "pivot_root")
    os.chdir("/")
    script = os.path.abspath(__file__)
    os.execv(sys.executable, [sys.executable, "-I", "-S", script, "--finale", kind, loopdev])


def finale(kind: str, loopdev: str) -> None:
    """Running from the tmpfs: unmount the loop root, detach the loop, unmount the outer fs."""
    say.say("finale", "running", f"pid={os.getpid()}")
    mount("proc", "/proc", "proc")
    for target in ("/oldroot/proc", "/oldroot/sys"):
        if mount_of(target):
            umount(target)
    mount("/oldroot/outer", "/outer", None, MS_MOVE)
    umount("/oldroot")
    fd = os.open(loopdev, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, LOOP_CLR_FD)
    finally:
        os.close(fd)
    umount("/outer")
    say.say("finale", "unmounted", "root", "outer")
    reboot(kind)


def shutdown(kind: str) -> None:
    """Leave every filesystem clean, then reboot(2) with ``kind``."""
    say.say("shutdown", kind)
    os.sync()
    root = mount_of("/")
    assert root is not None
    if mount_of("/outer") and root[2].startswith("/dev/loop"):
        enter_finale(kind, root[2])
        return
    for target in ("/sys", "/proc"):
        if mount_of(target):
            umount(target)
    mount(None, "/", None, MS_REMOUNT | MS_RDONLY)
    say.say("root-remounted", "ro")
    reboot(kind)


def report() -> None:
    """Verdicts about the machine as PID 1 finds it."""
    root = mount_of("/")
    assert root is not None
    say.say("rootfs", root[1])
    say.say("root-source", root[2])
    say.say("root-options", root[3])
    outer = mount_of("/outer")
    if outer:
        say.say("outer-fstype", outer[1])
        say.say("outer-holds-root-img", os.path.isfile("/outer/root.img"))
        loop = os.path.basename(root[2])
        try:
            with open(f"/sys/block/{loop}/loop/backing_file") as f:
                say.say("loop-backing", f.read().strip())
        except OSError as exc:
            say.say("loop-backing", f"unknown ({exc})")


def main() -> None:
    """PID 1: report, then end the machine as ``roost.vmtest`` says."""
    if sys.argv[1:2] == ["--finale"]:
        finale(sys.argv[2], sys.argv[3])
        return
    say.say("pid", os.getpid())
    if not os.path.exists("/proc/self"):
        mount("proc", "/proc", "proc")
    if not mount_of("/sys"):
        mount("sysfs", "/sys", "sysfs")
    mode = cmdline_arg("roost.vmtest", "clean")
    boots = count_boot()
    say.say("boot", boots)
    with open("/proc/uptime") as f:
        say.say("uptime", f.read().split()[0])
    report()
    if mode == "clean":
        shutdown("poweroff")
    elif mode == "halt":
        shutdown("halt")
    elif mode == "reboot":
        shutdown("reboot" if boots == 1 else "poweroff")
    elif mode == "dirty":
        with open(f"{STATE}/dirty-marker", "w") as f:
            f.write("written by a PID 1 that powers off without unmounting\n")
            f.flush()
            os.fsync(f.fileno())
        say.say("dirty", "powering off with / mounted read-write")
        reboot("poweroff")
    else:
        say.say("error", f"unknown roost.vmtest={mode}")
        reboot("poweroff")


if __name__ == "__main__":
    try:
        main()
    except BaseException as exc:  # noqa: BLE001  (PID 1 must not exit, whatever went wrong)
        # Report, and end the machine deliberately instead of panicking the kernel.
        say.say("error", f"{type(exc).__name__}: {exc}")
        reboot("poweroff")
    # Only reached if reboot(2) failed; give the console time to drain.
    time.sleep(5)
