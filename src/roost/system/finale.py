"""The finale: the last program PID 1 runs, from a shutdown tmpfs, with the old root at /oldroot.

roost copies this file, the interpreter and the few modules it imports into a
fresh tmpfs, pivots into it and execs it as PID 1. Nothing it runs from, and no
file descriptor it holds, is on the old root any more, so the old root and the
filesystem holding a loop-mounted root can finally be unmounted. It imports
nothing from roost (the package stays behind on the old root): only os, sys and
ctypes, which the interpreter loads from the tmpfs.

Usage: python -I -S finale.py poweroff|reboot|halt|kexec
       python -I -S finale.py --check   (exits 0 if it could run here)
"""

import ctypes
import os
import sys
import time

MS_RDONLY = 1
MS_REMOUNT = 32
MS_MOVE = 8192
MNT_DETACH = 2
LOOP_CLR_FD = 0x4C01
COMMANDS = {"poweroff": 0x4321FEDC, "reboot": 0x01234567, "halt": 0xCDEF0123,
            "kexec": 0x45584543}
PROC_PID_INIT_INO = 0xEFFFFFFC
OLD = "/oldroot"
VIRTUAL = {"proc", "sysfs", "devtmpfs", "devpts", "tmpfs", "ramfs", "cgroup", "cgroup2",
           "mqueue", "debugfs", "tracefs", "securityfs", "pstore", "bpf", "configfs",
           "fusectl", "hugetlbfs", "autofs", "binfmt_misc", "efivarfs", "nsfs", "rootfs"}

Entry = tuple[str, str, str, str]  # target, fstype, source, options

libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                       ctypes.c_char_p]
libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
libc.reboot.argtypes = [ctypes.c_int]
libc.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong]


def say(message: str) -> None:
    """One line on the console (fd 2); never raises."""
    try:
        os.write(2, f"roost: finale: {message}\n".encode(errors="replace"))
    except OSError:
        pass


def _b(text: str | None) -> bytes | None:
    return None if text is None else os.fsencode(text)


def _call(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0) -> None:
    """Mount (mount(2))."""
    _call(libc.mount(_b(source), _b(target), _b(fstype), flags, None), f"mount {target}")


def umount(target: str, flags: int = 0) -> None:
    """Unmount (umount2(2))."""
    _call(libc.umount2(_b(target), flags), f"umount {target}")


def mounts() -> list[Entry]:
    """(target, fstype, source, options) of every mount, in mount order."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields, tail = left.split(), right.split()
            target = fields[4].replace("\\040", " ")
            out.append((target, tail[0], tail[1], fields[5] + "," + (tail[2] if len(tail) > 2
                                                                        else "")))
    return out


def under_old(entries: list[Entry]) -> list[Entry]:
    """The mounts at /oldroot and below, deepest (latest) first."""
    return [m for m in reversed(entries) if m[0] == OLD or m[0].startswith(OLD + "/")]


def detach_loops() -> int:
    """Detach loop devices that no mount uses; return how many."""
    used = {m[2] for m in mounts()}
    count = 0
    try:
        names = sorted(n for n in os.listdir("/sys/block") if n.startswith("loop"))
    except OSError:
        return 0
    for name in names:
        if not os.path.exists(f"/sys/block/{name}/loop/backing_file"):
            continue
        device = f"/dev/{name}"
        if device in used:
            continue
        try:
            fd = os.open(device, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            if libc.ioctl(fd, LOOP_CLR_FD, 0) == 0:
                count += 1
                say(f"detached {device}")
        finally:
            os.close(fd)
    return count


def teardown(machine: bool) -> list[str]:
    """Unmount everything under /oldroot; move aside what holds a loop root; detach loops."""
    held = 0
    for _ in range(10):
        progress = False
        for target, _fstype, _source, _opts in under_old(mounts()):
            try:
                umount(target)
            except OSError:
                continue
            say(f"unmounted {target[len(OLD):] or '/'}")
            progress = True
        if machine and detach_loops():
            progress = True
        if not progress:
            # A filesystem under the old root that stays busy may be busy because a loop
            # device backs the old root with a file on it: move it out of the way so the
            # old root can go first, then the loop device, then it.
            for target, fstype, _source, _opts in under_old(mounts()):
                if target == OLD or fstype in VIRTUAL:
                    continue
                held += 1
                place = f"/held/{held}"
                os.makedirs(place, exist_ok=True)
                try:
                    mount(target, place, None, MS_MOVE)
                except OSError as exc:
                    say(f"cannot move {target} aside: {exc.strerror}")
                    continue
                progress = True
            for target, _fstype, _source, _opts in reversed(mounts()):
                if target.startswith("/held/"):
                    try:
                        umount(target)
                    except OSError:
                        continue
                    say(f"unmounted {target} (held the old root)")
                    progress = True
        if not progress:
            break
    left = [m for m in mounts() if (m[0].startswith(OLD) or m[0].startswith("/held/"))]
    for target, fstype, _source, opts in reversed(left):
        if machine and fstype not in VIRTUAL and "ro" not in opts.split(","):
            try:
                mount(None, target, None, MS_REMOUNT | MS_RDONLY)
                say(f"remounted {target} read-only (busy)")
            except OSError as exc:
                say(f"{target} stays busy and read-write: {exc.strerror}")
    real_left = [m[0] for m in left if m[1] not in VIRTUAL]
    for target, _fstype, _source, _opts in reversed(left):
        try:
            umount(target, MNT_DETACH)
        except OSError:
            pass
    return real_left


def end(kind: str, machine: bool) -> None:
    """sync, then reboot(2) the way asked; never returns."""
    os.sync()
    command = COMMANDS.get(kind, COMMANDS["poweroff"])
    if kind == "kexec":
        try:
            with open("/sys/kernel/kexec_loaded") as f:
                loaded = f.read().strip() == "1"
        except OSError:
            loaded = False
        if not loaded:
            say("no kexec kernel loaded: rebooting")
            command = COMMANDS["reboot"]
    if libc.reboot(ctypes.c_int(command & 0xFFFFFFFF).value) != 0:
        say(f"reboot({kind}) failed: {os.strerror(ctypes.get_errno())}")
    if machine and command != COMMANDS["halt"]:
        libc.reboot(ctypes.c_int(COMMANDS["halt"] & 0xFFFFFFFF).value)
    # PID 1 must not exit: wait for the machine to stop.
    while True:
        try:
            time.sleep(3600)
        except BaseException:  # noqa: BLE001 - nothing may end PID 1
            pass


def main(argv: list[str]) -> int:
    """Run the finale as PID 1, or --check that it could."""
    if argv[1:2] == ["--check"]:
        return 0
    kind = argv[1] if len(argv) > 1 else "poweroff"
    if os.getpid() != 1:
        say("refusing to run: not PID 1")
        return 1
    machine = os.stat("/proc/self/ns/pid").st_ino == PROC_PID_INIT_INO if os.path.exists(
        "/proc/self") else None
    try:
        if not os.path.exists("/proc/self"):
            mount("proc", "/proc", "proc")
        if machine is None:
            machine = os.stat("/proc/self/ns/pid").st_ino == PROC_PID_INIT_INO
        if machine and not os.path.exists("/sys/block"):
            mount("sysfs", "/sys", "sysfs")
        say(f"running from a tmpfs as PID 1; taking down the old root, then {kind}")
        left = teardown(machine)
        if left:
            say("still busy (detached lazily; not clean): " + " ".join(left))
        else:
            say("every filesystem is unmounted")
    except BaseException as exc:  # noqa: BLE001 - the machine must still go down
        say(f"error: {type(exc).__name__}: {exc}")
    end(kind, bool(machine))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
