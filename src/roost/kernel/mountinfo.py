"""/proc/self/mountinfo: which filesystems are mounted where, in mount order."""

from __future__ import annotations

# Filesystems whose contents die with the machine: nothing to make clean.
VIRTUAL = frozenset({
    "proc", "sysfs", "devtmpfs", "devpts", "tmpfs", "ramfs", "cgroup", "cgroup2", "mqueue",
    "debugfs", "tracefs", "securityfs", "pstore", "bpf", "configfs", "fusectl", "hugetlbfs",
    "autofs", "binfmt_misc", "efivarfs", "nsfs", "rpc_pipefs", "rootfs", "selinuxfs",
})


class Mount:
    """One line of /proc/self/mountinfo."""

    __slots__ = ("fstype", "ident", "options", "parent", "root", "source", "super_options",
                 "target")

    def __init__(self, ident: int, parent: int, target: str, options: str, fstype: str,
                 source: str, super_options: str, root: str = "/"):
        self.ident = ident
        self.root = root
        self.parent = parent
        self.target = target
        self.options = options
        self.fstype = fstype
        self.source = source
        self.super_options = super_options

    @property
    def read_only(self) -> bool:
        """True when the mount or its superblock is read-only."""
        return "ro" in self.options.split(",") or "ro" in self.super_options.split(",")

    @property
    def virtual(self) -> bool:
        """True for a filesystem with nothing to write back (proc, tmpfs, ...)."""
        return self.fstype in VIRTUAL

    def __repr__(self) -> str:
        return f"Mount({self.target!r}, {self.fstype!r}, {self.source!r})"


def unescape(text: str) -> str:
    """Undo the octal escapes mountinfo and /proc/swaps use for space, tab, newline, backslash."""
    if "\\" not in text:
        return text
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 3 < len(text) + 1 and text[i + 1:i + 4].isdigit():
            out.append(chr(int(text[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def parse_mountinfo(text: str) -> list[Mount]:
    """Parse the text of /proc/PID/mountinfo, in the kernel's order (mount order)."""
    mounts = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields = left.split()
        tail = right.split()
        if len(fields) < 6 or len(tail) < 2:
            continue
        mounts.append(Mount(int(fields[0]), int(fields[1]), unescape(fields[4]), fields[5],
                            tail[0], unescape(tail[1]), tail[2] if len(tail) > 2 else "",
                            unescape(fields[3])))
    return mounts


def table(path: str = "/proc/self/mountinfo") -> list[Mount]:
    """The mounts this process sees, in mount order (empty without /proc)."""
    try:
        with open(path) as f:
            return parse_mountinfo(f.read())
    except OSError:
        return []


def mounted(target: str, mounts: list[Mount] | None = None) -> Mount | None:
    """The mount on top at `target`, if it is a mount point."""
    found = [m for m in (table() if mounts is None else mounts) if m.target == target]
    return found[-1] if found else None
