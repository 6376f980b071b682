"""Leaving the old root: build the shutdown tmpfs, pivot into it, exec the finale there.

A root filesystem cannot be unmounted while PID 1 runs from it: the interpreter,
its libraries and any open file keep it busy, and so does a loop device whose
backing file lives on another filesystem. So roost copies the interpreter, the
shared objects it has mapped and the standard-library modules it has loaded
into a new tmpfs, checks in a chroot that the copy starts, makes every mount
private, moves /dev across, pivot_root()s, closes every descriptor but the
console and execs the finale (finale.py) from the tmpfs. The dracut convention
comes first: an executable /run/initramfs/shutdown is pivoted into and exec'd
with the verb as its argument.
"""

from __future__ import annotations

import os
import shutil
import sys
import time

from roost.kernel import console, linux
from roost.system import mounts

TYPE_CHECKING = False
if TYPE_CHECKING:
    from roost.kernel.reaper import Reaper

FINALE_ROOT = "/run/roost/finale"
DRACUT_ROOT = "/run/initramfs"
DRACUT_SHUTDOWN = "/run/initramfs/shutdown"
CHECK_TIMEOUT = 30.0  # the interpreter's first start from a cold tmpfs, under emulation too


def _mapped_files() -> set[str]:
    """Every file mapped into this process: the interpreter and its shared objects."""
    paths = set()
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                parts = line.split(maxsplit=5)
                if len(parts) == 6 and parts[5].startswith("/"):
                    path = parts[5].strip()
                    if not path.endswith("(deleted)"):
                        paths.add(path)
    except OSError:
        pass
    return paths


def stdlib_dir() -> str:
    """The directory of the standard library this interpreter runs from."""
    import ctypes  # noqa: PLC0415 - lazy (memory): stage 3 only; the finale needs it

    return os.path.dirname(os.path.dirname(os.path.realpath(ctypes.__file__)))


def elf_interpreter(path: str) -> str | None:
    """The program interpreter (PT_INTERP) an ELF executable names, if any."""
    import struct  # noqa: PLC0415 - lazy (memory): stage 3 only

    try:
        with open(path, "rb") as f:
            head = f.read(64)
            if head[:4] != b"\x7fELF" or head[4] != 2:
                return None
            (phoff,) = struct.unpack_from("<Q", head, 0x20)
            phentsize, phnum = struct.unpack_from("<HH", head, 0x36)
            for index in range(phnum):
                f.seek(phoff + index * phentsize)
                p_type, _flags, p_offset, _v, _p, p_filesz = struct.unpack("<IIQQQQ", f.read(40))
                if p_type == 3:  # PT_INTERP
                    f.seek(p_offset)
                    return f.read(p_filesz).rstrip(b"\0").decode()
    except (OSError, struct.error, UnicodeDecodeError):
        return None
    return None


def copy_path(path: str, root: str, depth: int = 0) -> int:
    """Copy `path` under `root`, recreating every symlink met on the way; return bytes copied.

    The loader and the kernel look for files by the names they were built with
    (/lib64/ld-linux-x86-64.so.2 through a merged-/usr symlink): those names must
    resolve in the tmpfs as they did on the root.
    """
    if depth > 16:
        return 0
    current = ""
    parts = [p for p in path.split("/") if p]
    for index, part in enumerate(parts):
        current += "/" + part
        if os.path.islink(current):
            target = os.readlink(current)
            dest = root + current
            if not os.path.lexists(dest):
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                os.symlink(target, dest)
            base = target if target.startswith("/") else os.path.join(
                os.path.dirname(current), target)
            rest = "/".join(parts[index + 1:])
            resolved = os.path.normpath(base + ("/" + rest if rest else ""))
            return copy_path(resolved, root, depth + 1)
    dest = root + current
    if os.path.isfile(current) and not os.path.exists(dest):
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        shutil.copy2(current, dest)  # mtime kept: the copied .pyc stay valid
        return os.path.getsize(current)
    return 0


def files_to_copy() -> set[str]:
    """What the finale needs: the interpreter, its shared objects, the stdlib modules loaded."""
    import ctypes  # noqa: F401, PLC0415 - lazy (memory): loaded here for the finale

    stdlib = stdlib_dir()
    paths = _mapped_files()
    paths.add(os.path.realpath(sys.executable))
    # The interpreter finds its prefix by this landmark even though `os` is frozen.
    paths.add(os.path.join(stdlib, "os.py"))
    for module in list(sys.modules.values()):
        for attr in ("__file__", "__cached__"):
            path = getattr(module, attr, None)
            if isinstance(path, str) and os.path.realpath(path).startswith(stdlib + os.sep):
                paths.add(os.path.realpath(path))
    for extra in ("/etc/ld.so.cache",):
        paths.add(extra)
    return {p for p in paths if os.path.isfile(p)}


def finale_root() -> str:
    """Where the shutdown tmpfs goes: under /run while it is mounted, else on /run itself.

    Mounting on the bare /run directory needs no write to the root filesystem, which may
    be read-only by now.
    """
    return FINALE_ROOT if mounts.mounted("/run") is not None else "/run"


def build(root: str = FINALE_ROOT) -> tuple[str, int]:
    """Mount a tmpfs at `root` and copy the finale into it; return the interpreter and bytes."""
    os.makedirs(root, mode=0o755, exist_ok=True)
    linux.mount("tmpfs", root, "tmpfs", linux.MS_NOSUID | linux.MS_NODEV, "mode=0755")
    total = 0
    exe = sys.executable
    names = [exe, *sorted(files_to_copy())]
    interpreter = elf_interpreter(os.path.realpath(exe))
    if interpreter:
        names.append(interpreter)
    for top in ("/lib", "/lib64", "/bin", "/sbin"):
        if os.path.islink(top):
            names.append(top)
    for path in names:
        total += copy_path(path, root)
    # The loader asks for sonames (libffi.so.8), which are symlinks to what got mapped.
    for path in _mapped_files():
        directory = os.path.dirname(path)
        try:
            entries = os.listdir(directory)
        except OSError:
            continue
        for entry in entries:
            link = os.path.join(directory, entry)
            if (os.path.islink(link) and os.path.realpath(link) == path
                    and not os.path.lexists(root + link)):
                os.symlink(os.readlink(link), root + link)
    real = os.path.realpath(exe)
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "finale.py")
    shutil.copyfile(here, os.path.join(root, "finale.py"))
    for directory in ("dev", "proc", "sys", "oldroot", "held", "tmp"):
        os.makedirs(os.path.join(root, directory), mode=0o755, exist_ok=True)
    return real, total


def check(root: str, python: str, reaper: Reaper) -> str | None:
    """Start the copied interpreter in a chroot of `root`; None if it works, else why not."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child only execs
        try:
            os.chroot(root)
            os.chdir("/")
            fd = os.open("/dev/null", os.O_RDWR) if os.path.exists("/dev/null") else -1
            if fd >= 0:
                os.dup2(fd, 0)
            os.execv(python, [python, "-I", "-S", "-B", "/finale.py", "--check"])
        except BaseException as exc:  # noqa: BLE001 - the child must reach _exit
            console.say(f"finale check: {exc}")
            os._exit(127)
    result: dict[str, str | None] = {}
    reaper.watch(pid, lambda _pid, status: result.update(
        why=None if status.code == 0 and status.signal is None else status.describe()))
    end = time.monotonic() + CHECK_TIMEOUT
    while "why" not in result and time.monotonic() < end:
        reaper.drain()
        if "why" not in result:
            time.sleep(0.01)
    if "why" not in result:
        try:
            os.kill(pid, 9)
        except OSError:
            pass
        return f"the copied interpreter did not finish within {CHECK_TIMEOUT:g}s"
    return result["why"]


def _move_dev(new_root: str) -> None:
    try:
        linux.mount("/dev", os.path.join(new_root, "dev"), None, linux.MS_MOVE)
    except OSError as exc:
        console.say(f"cannot move /dev into the shutdown root ({exc.strerror}); "
                    "mounting a new devtmpfs there")
        linux.mount("devtmpfs", os.path.join(new_root, "dev"), "devtmpfs", linux.MS_NOSUID,
                    "mode=0755")


def _console_only() -> None:
    """Point 0, 1 and 2 at the console of the new root and close every other descriptor.

    In a PID namespace the console is the host's: 0, 1 and 2 stay what they were (files
    opened through the parent's mounts do not hold the namespace's copy of the root).
    """
    if linux.pid1_scope() == linux.MACHINE:
        console.attach()
    os.closerange(3, 65536)


def enter(kind: str, python: str, root: str = FINALE_ROOT) -> None:
    """Pivot into `root` and exec the finale there; returns only if that failed (raises)."""
    linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)
    _move_dev(root)
    os.chdir(root)
    linux.pivot_root(".", "oldroot")
    os.chdir("/")
    console.say(f"pivoted into the shutdown tmpfs; exec'ing the finale ({kind})")
    _console_only()
    os.execv(python, [python, "-I", "-S", "-B", "/finale.py", kind])


def dracut_available() -> bool:
    """True when an initramfs left a shutdown program for us (/run/initramfs/shutdown)."""
    return os.access(DRACUT_SHUTDOWN, os.X_OK)


def enter_dracut(kind: str) -> None:
    """Pivot into /run/initramfs and exec its /shutdown with the verb; returns only on failure."""
    if mounts.mounted(DRACUT_ROOT) is None:
        linux.mount(DRACUT_ROOT, DRACUT_ROOT, None, linux.MS_BIND)
    linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)
    os.makedirs(os.path.join(DRACUT_ROOT, "oldroot"), exist_ok=True)
    if os.path.isdir(os.path.join(DRACUT_ROOT, "dev")):
        _move_dev(DRACUT_ROOT)
    os.chdir(DRACUT_ROOT)
    linux.pivot_root(".", "oldroot")
    os.chdir("/")
    console.say(f"pivoted into /run/initramfs; exec'ing its /shutdown {kind}")
    _console_only()
    os.execv("/shutdown", ["/shutdown", kind])
