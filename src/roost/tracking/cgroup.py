"""A cgroup v2 per service, under a directory roost owns.

Layout, under the base directory:

    <base>/<name>.service/   one per service; its processes join it before they exec
    <base>/roost/            roost itself, when it had to leave <base> so that
                             controllers could be enabled there (a non-root cgroup
                             with controllers on for its children must hold no process)

The base is roost's own cgroup when that is clearly roost's: roost is PID 1 (of the
machine or of a container), or it is the only process in a cgroup it may write (a
delegated cgroup). Otherwise only a configured directory is used (ROOST_CGROUP),
created if missing and removed on exit. Membership is then exact and immune to
setsid and double forks; `cgroup.events` says when a service is empty (pollable
with EPOLLPRI), `cgroup.kill` kills all of it at once, even a fork bomb.

`Tree` holds the mechanics; `CgroupMeans` is the means the tracker uses.
"""

from __future__ import annotations

import errno
import os

from roost.kernel import console, mountinfo
from roost.tracking.means import CGROUP, Means, Unplaced

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from roost.core.model import ServiceConfig
    from roost.kernel.loop import Loop
    from roost.kernel.proc import ProcStat
    from roost.tracking.means import Wait

# Controllers roost uses for limits, and the files they give each service.
CONTROLLERS = ("memory", "pids", "cpu")
SUFFIX = ".service"
SELF_LEAF = "roost"


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def mounts(path: str = "/proc/self/mountinfo") -> list[tuple[str, str, bool]]:
    """Every cgroup2 mount visible here: (mount point, root inside the hierarchy, writable)."""
    return [(m.target, m.root, "rw" in m.options.split(","))
            for m in mountinfo.table(path) if m.fstype == "cgroup2"]


def own_path(pid: int | str = "self") -> str | None:
    """The cgroup v2 path of a process (as /proc shows it), or None."""
    try:
        text = _read(f"/proc/{pid}/cgroup")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("0::"):
            return line[3:]
    return None


def locate(path: str) -> tuple[str, bool] | None:
    """The directory of cgroup `path` through a visible cgroup2 mount, and whether writable."""
    best: tuple[str, bool] | None = None
    for point, root, writable in mounts():
        if root != "/" and not (path == root or path.startswith(root.rstrip("/") + "/")):
            continue
        rel = path if root == "/" else path[len(root.rstrip("/")):]
        directory = point.rstrip("/") + rel if rel != "/" else point
        if not os.path.isdir(directory):
            continue
        # /sys/fs/cgroup wins over /sys/fs/cgroup/unified and other mounts.
        if best is None or point == "/sys/fs/cgroup":
            best = (directory, writable)
    return best


def hierarchy_path(directory: str) -> str | None:
    """The cgroup path of a directory as /proc/PID/cgroup would show it, or None."""
    best: tuple[str, str] | None = None
    for point, root, _writable in mounts():
        inside = directory == point or directory.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) > len(best[0])):
            best = (point, root)
    if best is None:
        return None
    point, root = best
    rel = directory[len(point.rstrip("/")):]
    return (root.rstrip("/") + rel) or "/"


def visible_procs(directory: str) -> list[int]:
    """PIDs in a cgroup (0 stands for a process outside this PID namespace)."""
    return [int(p) for p in _read(os.path.join(directory, "cgroup.procs")).split()]


class Tree:
    """roost's cgroup subtree: one cgroup per service, limits, emptiness, kill."""

    def __init__(self, base: str, *, created: bool, moved_from: str | None = None):
        self.base = base
        self.created = created
        # Where roost was before it moved itself into <base>/roost (to move back on exit).
        self.moved_from = moved_from
        self.enabled: set[str] = set()
        self.limits_note = ""
        self._made: set[str] = set()
        # The base as /proc/PID/cgroup names it, to map a process to its service.
        self.hierarchy = hierarchy_path(base) or ""

    # -- finding a place -------------------------------------------------------

    @classmethod
    def detect(cls, configured: str | None, pid1: bool) -> tuple[Tree | None, str]:
        """A usable subtree here, or (None, why not)."""
        if configured is not None:
            return cls._configured(configured)
        mine = own_path()
        if mine is None:
            return None, "no cgroup v2 hierarchy (this process has no 0:: entry)"
        found = locate(mine)
        if found is None:
            return None, f"cgroup {mine} is not reachable through a cgroup2 mount"
        directory, writable = found
        if not writable or not os.access(os.path.join(directory, "cgroup.procs"), os.W_OK):
            return None, f"cgroup {directory} is read-only here"
        me = os.getpid()
        try:
            procs = visible_procs(directory)
        except OSError as exc:
            return None, f"cannot read {directory}/cgroup.procs: {exc.strerror}"
        # 0 stands for a process of another PID namespace sharing this cgroup.
        foreign = procs.count(0)
        others = [p for p in procs if p not in (0, me)]
        real_root = not os.path.exists(os.path.join(directory, "cgroup.type"))
        if pid1:
            # A machine's init sees every process; a container's init is at the root of
            # its cgroup namespace, where only its runtime's helper may be foreign.
            ours = not foreign or (mine == "/" and not real_root)
        else:
            ours = mine != "/" and not others and not foreign
        if not ours:
            return None, (f"cgroup {directory} is shared with other processes; set "
                          "ROOST_CGROUP to a directory roost may own")
        tree = cls(directory, created=False)
        tree._enable_controllers(mine_dir=directory)
        return tree, ""

    @classmethod
    def _configured(cls, base: str) -> tuple[Tree | None, str]:
        base = os.path.abspath(base)
        parent = os.path.dirname(base)
        if not os.path.exists(os.path.join(parent, "cgroup.procs")):
            return None, f"{parent} is not a cgroup v2 directory"
        created = False
        try:
            os.mkdir(base)
            created = True
        except FileExistsError:
            pass
        except OSError as exc:
            return None, f"cannot create {base}: {exc.strerror}"
        # The parent must pass the controllers down; a root or empty parent can.
        try:
            offered = set(_read(os.path.join(parent, "cgroup.controllers")).split())
            passed = set(_read(os.path.join(parent, "cgroup.subtree_control")).split())
        except OSError:
            offered = passed = set()
        for controller in CONTROLLERS:
            if controller in offered and controller not in passed:
                try:
                    _write(os.path.join(parent, "cgroup.subtree_control"), f"+{controller}")
                except OSError:
                    pass
        tree = cls(base, created=created)
        mine = own_path()
        here = locate(mine) if mine is not None else None
        tree._enable_controllers(mine_dir=here[0] if here else None)
        return tree, ""

    def _enable_controllers(self, mine_dir: str | None) -> None:
        """Turn on memory, pids and cpu for the services, where the base offers them."""
        try:
            offered = set(_read(os.path.join(self.base, "cgroup.controllers")).split())
        except OSError:
            offered = set()
        wanted = [c for c in CONTROLLERS if c in offered]
        missing = [c for c in CONTROLLERS if c not in offered]
        if missing:
            self.limits_note = ("controller" + ("s " if len(missing) > 1 else " ")
                                + ", ".join(missing) + f" not available in {self.base}")
        if not wanted:
            return
        is_root = not os.path.exists(os.path.join(self.base, "cgroup.type"))
        if not is_root and mine_dir == self.base:
            # Controllers for the children need an empty parent: roost moves into a leaf.
            leaf = os.path.join(self.base, SELF_LEAF)
            try:
                os.makedirs(leaf, exist_ok=True)
                _write(os.path.join(leaf, "cgroup.procs"), "0")
                self.moved_from = self.base
            except OSError as exc:
                self.limits_note = f"limits unavailable: cannot move roost to {leaf}: " \
                                   f"{exc.strerror}"
                return
        for controller in wanted:
            try:
                _write(os.path.join(self.base, "cgroup.subtree_control"), f"+{controller}")
                self.enabled.add(controller)
            except OSError as exc:
                note = f"cannot enable {controller} in {self.base}: {exc.strerror}"
                if exc.errno == errno.EBUSY:
                    note += " (other processes share that cgroup)"
                self.limits_note = f"{self.limits_note}; {note}" if self.limits_note else note

    # -- services ----------------------------------------------------------------

    def path(self, name: str) -> str:
        """The cgroup directory of service `name`."""
        return os.path.join(self.base, name + SUFFIX)

    def prepare(self, config: ServiceConfig) -> tuple[str, list[str]]:
        """Create (or reuse) the service's cgroup and apply its limits: (path, warnings)."""
        path = self.path(config.name)
        warnings: list[str] = []
        try:
            os.mkdir(path)
            self._made.add(config.name)
        except FileExistsError:
            self._made.add(config.name)
            if self.populated(config.name):
                # Processes of an earlier life of roost: the cgroup is roost's, they are stale.
                warnings.append(f"killed processes left in {path} by an earlier roost")
                self.kill(config.name)
        limits = (("memory", "memory.max", config.memory_max),
                  ("pids", "pids.max", config.pids_max),
                  ("cpu", "cpu.weight", config.cpu_weight))
        for controller, filename, value in limits:
            if controller not in self.enabled:
                if value is not None:
                    warnings.append(f"{filename} = {value} not applied: "
                                    f"{self.limits_note or controller + ' controller off'}")
                continue
            default = "100" if controller == "cpu" else "max"
            try:
                _write(os.path.join(path, filename), default if value is None else str(value))
            except OSError as exc:
                warnings.append(f"cannot set {filename} = {value}: {exc.strerror}")
        return path, warnings

    def procs(self, name: str) -> list[int]:
        """Every process in the service's cgroup and below it (zombies are not listed)."""
        found: list[int] = []
        for directory, subdirs, _files in os.walk(self.path(name)):
            try:
                found.extend(p for p in visible_procs(directory) if p)
            except OSError:
                subdirs.clear()
        return found

    def populated(self, name: str) -> bool:
        """True while the cgroup (or a child of it) holds a live process."""
        try:
            return "populated 1" in _read(os.path.join(self.path(name), "cgroup.events"))
        except OSError:
            return False

    def open_events(self, name: str) -> int:
        """A descriptor on cgroup.events: EPOLLPRI when it changes, re-read with pread."""
        return os.open(os.path.join(self.path(name), "cgroup.events"),
                       os.O_RDONLY | os.O_CLOEXEC)

    def service_of(self, pid: int) -> str | None:
        """The service whose cgroup holds `pid`, if any."""
        path = own_path(pid)
        prefix = self.hierarchy.rstrip("/") + "/"
        if path is None or not self.hierarchy or not path.startswith(prefix):
            return None
        # A service may make cgroups of its own below its one.
        leaf = path[len(prefix):].split("/", 1)[0]
        if not leaf.endswith(SUFFIX):
            return None
        return leaf[: -len(SUFFIX)]

    def holds(self, name: str, pid: int) -> bool:
        """True if `pid` is in the service's cgroup now."""
        return self.service_of(pid) == name

    def kill(self, name: str) -> bool:
        """SIGKILL every process of the service at once (cgroup.kill); False if unsupported."""
        try:
            _write(os.path.join(self.path(name), "cgroup.kill"), "1")
        except OSError:
            return False
        return True

    def remove(self, name: str) -> None:
        """Remove an empty service cgroup."""
        self._made.discard(name)
        try:
            os.rmdir(self.path(name))
        except OSError:
            pass

    def close(self) -> None:
        """Remove every cgroup roost made, and go back where roost came from."""
        for name in list(self._made):
            self.remove(name)
        if self.moved_from is not None:
            try:
                for controller in sorted(self.enabled):
                    _write(os.path.join(self.base, "cgroup.subtree_control"), f"-{controller}")
                _write(os.path.join(self.moved_from, "cgroup.procs"), "0")
                os.rmdir(os.path.join(self.base, SELF_LEAF))
            except OSError:
                pass
            self.moved_from = None
        if self.created:
            try:
                os.rmdir(self.base)
            except OSError:
                pass
            self.created = False


_EPOLLPRI = 0x002


class CgroupMeans(Means):
    """Tracking by a cgroup per service: exact, emptiness as an event, cgroup.kill."""

    name = CGROUP

    def __init__(self, loop: Loop, tree: Tree):
        super().__init__()
        self._loop = loop
        self.tree = tree
        # roost made the base, or moved itself out of it: both are undone on exit.
        self.needs_close = tree.created or tree.moved_from is not None

    def describe(self) -> str:
        """The means with its base directory."""
        return f"cgroup ({self.tree.base})"

    def place(self, config: ServiceConfig) -> str | None:
        """Create the service's cgroup with its limits applied; its path."""
        try:
            path, warnings = self.tree.prepare(config)
        except OSError as exc:
            raise Unplaced(f"no cgroup ({exc.strerror})") from exc
        for warning in warnings:
            console.say(f"{config.name}: {warning}")
        return path

    def pids(self, name: str, table: dict[int, ProcStat] | None = None,
             fresh: bool = True) -> list[int]:
        """The PIDs in the service's cgroup and below it."""
        return self.tree.procs(name)

    def owns(self, name: str, pid: int) -> bool:
        """True if `pid` is in the service's cgroup now."""
        return self.tree.holds(name, pid)

    def service_of(self, pid: int, table: dict[int, ProcStat] | None = None) -> str | None:
        """The service whose cgroup holds `pid`."""
        return self.tree.service_of(pid)

    def cgroup_of(self, name: str) -> str | None:
        """The service's cgroup directory."""
        return self.tree.path(name)

    def kill(self, name: str) -> bool:
        """cgroup.kill: atomic, even against a fork bomb."""
        return self.tree.kill(name)

    def arm(self, name: str, wait: Wait, check: Callable[[], None]) -> bool:
        """Watch cgroup.events, opened before the first check so no change is missed."""
        try:
            fd = self.tree.open_events(name)
        except OSError:
            return False
        wait.fds.append(fd)
        # cgroup.events raises EPOLLPRI on every change; reading it re-arms.
        self._loop.watch(fd, _EPOLLPRI, lambda _events: check())
        return True

    def empty(self, name: str) -> bool:
        """cgroup.events says `populated 0`."""
        return not self.tree.populated(name)

    def forget(self, name: str) -> None:
        """Remove the service's (empty) cgroup."""
        super().forget(name)
        self.tree.remove(name)

    def close(self) -> None:
        """Remove every cgroup roost made, and go back where roost came from."""
        self.tree.close()
