"""The mount table: the API filesystems at boot, and taking every filesystem down at shutdown.

At boot roost mounts what a machine needs and finds missing. At shutdown it
unmounts in reverse mount order, retrying while that makes progress, remounts
read-only what stays busy and detaches loop devices that nothing mounts any
more. As PID 1 of a PID namespace it touches only the mounts that appeared
after it started (the rest belong to whoever made the namespace) and never
remounts a superblock, detaches a loop device or swaps off: those reach the host.
"""

from __future__ import annotations

import errno
import os

from roost.kernel import console, linux
from roost.kernel.mountinfo import VIRTUAL, Mount, mounted, parse_mountinfo, table, unescape

__all__ = ["VIRTUAL", "Mount", "mounted", "parse_mountinfo", "table"]

# Kept mounted to the end: the finale needs /dev (the console, loop devices) and /run
# (its tmpfs, or dracut's /run/initramfs); /proc and /sys cost nothing to keep.
KEEP = frozenset({"/", "/proc", "/sys", "/dev", "/run"})

NOSUID_NODEV_NOEXEC = linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC

# (target, fstype, source, flags, data): the API filesystems, parents first.
API_MOUNTS: tuple[tuple[str, str, str, int, str | None], ...] = (
    ("/proc", "proc", "proc", NOSUID_NODEV_NOEXEC, None),
    ("/sys", "sysfs", "sysfs", NOSUID_NODEV_NOEXEC, None),
    ("/dev", "devtmpfs", "devtmpfs", linux.MS_NOSUID, "mode=0755"),
    ("/dev/pts", "devpts", "devpts", linux.MS_NOSUID | linux.MS_NOEXEC,
     "mode=0620,ptmxmode=0666"),
    ("/dev/shm", "tmpfs", "tmpfs", linux.MS_NOSUID | linux.MS_NODEV, "mode=1777"),
    ("/run", "tmpfs", "tmpfs", linux.MS_NOSUID | linux.MS_NODEV, "mode=0755"),
    ("/sys/fs/cgroup", "cgroup2", "cgroup2", NOSUID_NODEV_NOEXEC, None),
)


def mount_api(target: str, fstype: str, source: str, flags: int, data: str | None) -> bool:
    """Mount one API filesystem unless something is mounted there; True if roost mounted it."""
    if target == "/proc":
        if os.path.exists("/proc/self/mountinfo"):
            return False
    elif mounted(target) is not None:
        return False
    try:
        os.makedirs(target, mode=0o755, exist_ok=True)
        linux.mount(source, target, fstype, flags, data)
    except OSError as exc:
        console.say(f"cannot mount {fstype} on {target}: {exc.strerror or exc}")
        return False
    return True


# -- shutdown ---------------------------------------------------------------------


class Teardown:
    """Take the mount table down as far as it goes; say what is left."""

    def __init__(self, scope: str, baseline: set[int] | None = None):
        self.scope = scope
        # In a namespace: the mount ids present when roost started, never touched.
        self.baseline = baseline or set()
        self.unmounted: list[str] = []
        self.remounted: list[str] = []
        self.detached: list[str] = []
        self.failed: dict[str, str] = {}

    def _mine(self, m: Mount) -> bool:
        if self.scope == linux.MACHINE:
            return m.target not in KEEP
        return m.ident not in self.baseline

    def unmount_round(self) -> bool:
        """One pass in reverse mount order; True if anything was unmounted."""
        progress = False
        for m in reversed(table()):
            if not self._mine(m):
                continue
            try:
                linux.umount(m.target, linux.UMOUNT_NOFOLLOW)
            except OSError as exc:
                if exc.errno == errno.EINVAL and mounted(m.target) is None:
                    continue  # already gone with a parent
                self.failed[m.target] = exc.strerror or str(exc)
                continue
            self.failed.pop(m.target, None)
            self.unmounted.append(m.target)
            progress = True
        return progress

    def detach_loops(self) -> bool:
        """Detach every loop device that no mount uses any more (machine only)."""
        if self.scope != linux.MACHINE:
            return False
        sources = {m.source for m in table()}
        progress = False
        try:
            names = sorted(n for n in os.listdir("/sys/block") if n.startswith("loop"))
        except OSError:
            return False
        for name in names:
            if not os.path.exists(f"/sys/block/{name}/loop/backing_file"):
                continue
            device = f"/dev/{name}"
            if device in sources:
                continue
            try:
                linux.loop_detach(device)
            except OSError as exc:
                self.failed[device] = exc.strerror or str(exc)
                continue
            self.detached.append(device)
            progress = True
        return progress

    def remount_busy(self) -> None:
        """Remount read-only each real filesystem that stays mounted (machine only)."""
        if self.scope != linux.MACHINE:
            return
        for m in reversed(table()):
            if m.virtual or m.read_only or (m.target in KEEP and m.target != "/"):
                continue
            try:
                linux.mount(None, m.target, None, linux.MS_REMOUNT | linux.MS_RDONLY)
            except OSError as exc:
                self.failed[m.target] = f"busy, and read-only remount failed: {exc.strerror}"
                continue
            self.remounted.append(m.target)

    def run(self, rounds: int = 8) -> None:
        """Unmount and detach while that makes progress, then remount read-only what is left."""
        for _ in range(rounds):
            progress = self.unmount_round()
            progress = self.detach_loops() or progress
            if not progress:
                break
        self.remount_busy()
        # A read-only root may have let a loop device's filesystem go.
        if self.detach_loops():
            self.unmount_round()

    def dirty(self) -> list[Mount]:
        """Real filesystems still mounted read-write, or holding a loop-mounted root."""
        mounts = table()
        left = [m for m in mounts if not m.virtual and not m.read_only]
        root = mounted("/", mounts)
        if root is not None and root.source.startswith("/dev/loop"):
            # The root's backing file lives on a filesystem that cannot go while it is mounted.
            left += [m for m in mounts if not m.virtual and m.target != "/" and m not in left]
        return left

    def summary(self) -> str:
        """One line for the console."""
        parts = []
        if self.unmounted:
            parts.append("unmounted " + " ".join(self.unmounted))
        if self.remounted:
            parts.append("read-only " + " ".join(self.remounted))
        if self.detached:
            parts.append("detached " + " ".join(self.detached))
        if self.failed:
            parts.append("failed " + "; ".join(f"{k}: {v}" for k, v in self.failed.items()))
        return ", ".join(parts) or "nothing to unmount"


def swapoff_all() -> list[str]:
    """Turn off every swap area (machine only); return the ones that were."""
    done: list[str] = []
    try:
        with open("/proc/swaps") as f:
            lines = f.read().splitlines()[1:]
    except OSError:
        return done
    for line in lines:
        fields = line.split()
        if not fields:
            continue
        path = unescape(fields[0])
        try:
            linux.swapoff(path)
        except OSError as exc:
            console.say(f"swapoff {path}: {exc.strerror or exc}")
            continue
        done.append(path)
    return done
