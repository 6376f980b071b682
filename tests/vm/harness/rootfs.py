"""The guest's ext4 root image (``mke2fs -d``, no mount), and for layout loop the outer one."""

from __future__ import annotations

import compileall
import dataclasses
import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path

from .assets import Assets
from .paths import GUEST_DIR, GUEST_LIB, GUEST_SHEBANG, ROOST_SRC, ROOT_IN_OUTER
from .tools import _link_or_copy, _run, _write

# busybox applets linked into the root image for scenario scripts.  init, poweroff, reboot
# and halt are deliberately absent: those names belong to roost.
ROOT_APPLETS = (
    "sh", "cat", "echo", "sleep", "ls", "mkdir", "rm", "touch", "sync", "true", "false",
    "mount", "umount", "ps", "kill", "grep", "dd", "stat", "readlink", "losetup", "df",
    "head", "tail", "wc", "sed", "printf", "test", "[", "env", "id", "chmod", "ln", "cp",
    "mv", "uname", "dmesg", "hostname", "pidof", "timeout", "yes", "nproc", "free",
)


@dataclasses.dataclass(frozen=True)
class Symlink:
    """An extra file that is a symbolic link to ``target``."""

    target: str


ExtraFile = bytes | str | tuple[bytes | str, int] | Symlink


def script(source: str, mode: int = 0o755) -> tuple[bytes, int]:
    """A guest Python script: ``source`` behind the guest interpreter's shebang, executable."""
    return (f"{GUEST_SHEBANG}\n{source.lstrip()}".encode(), mode)


@dataclasses.dataclass(frozen=True)
class RootImage:
    """Images for one scenario: ``disk`` is what the guest sees as /dev/vda."""

    layout: str
    workdir: Path
    disk: Path
    # The ext4 root.  For layout "loop" it lives inside ``disk``; this host copy is written by
    # check_clean (or read_file) from the outer image, so it shows what the guest left.
    root: Path
    timings: dict[str, float]

    @property
    def qemu_drives(self) -> list[Path]:
        """Disk images attached to the VM, in order."""
        return [self.disk]


def _link_tree(src: Path, dest: Path) -> None:
    """Mirror ``src`` into ``dest`` with hardlinks (fast; files must be replaced, not edited)."""
    for root, dirs, files in os.walk(src):
        rel = Path(root).relative_to(src)
        (dest / rel).mkdir(parents=True, exist_ok=True)
        for name in dirs + files:
            path = Path(root) / name
            if path.is_symlink():
                (dest / rel / name).symlink_to(os.readlink(path))
                if name in dirs:
                    dirs.remove(name)
            elif name in files:
                _link_or_copy(path, dest / rel / name)


def _tree_size(tree: Path) -> tuple[int, int]:
    """(bytes rounded up to 4 KiB blocks, number of inodes) of a directory tree."""
    total, count = 0, 0
    for root, dirs, files in os.walk(tree):
        for name in dirs + files:
            count += 1
            path = Path(root) / name
            if not path.is_symlink() and path.is_file():
                total += (path.stat().st_size + 4095) // 4096 * 4096
    return total, count


def _mke2fs(tree: Path, image: Path, label: str, free_mb: int) -> None:
    """An ext4 image of ``tree`` (``mke2fs -d``), sized for its contents plus ``free_mb``."""
    used, inodes = _tree_size(tree)
    size_kb = (used * 11 // 10) // 1024 + free_mb * 1024 + 16 * 1024  # +10%, free, journal
    if image.exists():
        image.unlink()
    _run(["mke2fs", "-q", "-F", "-t", "ext4", "-b", "4096", "-L", label,
          "-N", str(inodes + 4096), "-E", "root_owner=0:0", "-d", tree, image, f"{size_kb}k"],
         timeout=300)


def _compile(tree: Path, guest_dir: str) -> None:
    """Precompile a copied source tree so the guest never writes __pycache__ at first import."""
    compileall.compile_dir(tree, quiet=2, ddir=guest_dir, workers=1)


def build_root(workdir: Path, assets: Assets, *, layout: str = "disk",
               extra_files: Mapping[str, ExtraFile] | None = None,
               roost_src: Path | None = ROOST_SRC, free_mb: int = 48,
               hostname: str = "roost-vm") -> RootImage:
    """Build the ext4 root (and for ``layout="loop"`` the outer image holding it) in ``workdir``.

    ``extra_files`` maps guest paths to bytes/str (mode 0644), ``(data, mode)`` or a Symlink.
    """
    if layout not in ("disk", "loop"):
        raise ValueError(f"unknown layout {layout!r} (disk or loop)")
    workdir.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    tree = workdir / "root-tree"
    if tree.exists():
        shutil.rmtree(tree)
    _link_tree(assets.python_tree, tree)
    for d in ("proc", "sys", "dev", "run", "tmp", "outer", "root", "etc/roost", "var/lib",
              "var/log", "sbin", "bin", GUEST_LIB.lstrip("/"), "usr/lib/roost"):
        (tree / d).mkdir(parents=True, exist_ok=True)
    (tree / "tmp").chmod(0o1777)
    (tree / "root").chmod(0o700)
    _write(tree / "etc" / "hostname", f"{hostname}\n".encode())
    _write(tree / "etc" / "passwd", b"root:x:0:0:root:/root:/bin/sh\n"
           b"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
    _write(tree / "etc" / "group", b"root:x:0:\nnobody:x:65534:\n")
    _link_or_copy(assets.busybox, tree / "bin" / "busybox")
    for applet in ROOT_APPLETS:
        (tree / "bin" / applet).symlink_to("busybox")

    # roost: its source tree, a launcher, and the argv[0] names it dispatches on.
    if roost_src is not None and roost_src.is_dir():
        shutil.copytree(roost_src, tree / "usr/lib/roost/roost",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        _compile(tree / "usr/lib/roost/roost", "/usr/lib/roost/roost")
    _write(tree / "usr/bin/roost", (
        f"{GUEST_SHEBANG}\n"
        '"""roost, from the source tree copied into this image."""\n'
        "import sys\n"
        'sys.path.insert(0, "/usr/lib/roost")\n'
        "from roost.__main__ import main\n"
        "sys.exit(main())\n").encode(), 0o755)
    for name in ("init", "poweroff", "reboot", "halt", "shutdown"):
        (tree / "sbin" / name).symlink_to("/usr/bin/roost")

    # Guest helpers: say.py (verdict lines) and the placeholder PID 1.
    for src in sorted(GUEST_DIR.glob("*.py")):
        text = src.read_text()
        if text.startswith("#!"):
            text = GUEST_SHEBANG + "\n" + text.split("\n", 1)[1]
        _write(tree / GUEST_LIB.lstrip("/") / src.name, text.encode(),
               0o755 if text.startswith("#!") else 0o644)
    _compile(tree / GUEST_LIB.lstrip("/"), GUEST_LIB)

    for guest_path, spec in (extra_files or {}).items():
        dest = tree / guest_path.lstrip("/")
        if isinstance(spec, Symlink):
            dest.parent.mkdir(parents=True, exist_ok=True)
            if dest.exists() or dest.is_symlink():
                dest.unlink()
            dest.symlink_to(spec.target)
            continue
        data, mode = spec if isinstance(spec, tuple) else (spec, 0o644)
        _write(dest, data.encode() if isinstance(data, str) else data, mode)
    timings["stage"] = time.monotonic() - t0

    t0 = time.monotonic()
    root_img = workdir / "root.img"
    _mke2fs(tree, root_img, "roost-root", free_mb)
    timings["mke2fs_root"] = time.monotonic() - t0
    shutil.rmtree(tree)
    disk = root_img
    if layout == "loop":
        t0 = time.monotonic()
        outer_tree = workdir / "outer-tree"
        if outer_tree.exists():
            shutil.rmtree(outer_tree)
        outer_tree.mkdir()
        os.rename(root_img, outer_tree / ROOT_IN_OUTER)
        disk = workdir / "outer.img"
        _mke2fs(outer_tree, disk, "roost-outer", 16)
        shutil.rmtree(outer_tree)
        timings["mke2fs_outer"] = time.monotonic() - t0
    timings["total"] = sum(timings.values())
    return RootImage(layout=layout, workdir=workdir, disk=disk, root=root_img, timings=timings)
