"""After the VM: read the images it left (``dumpe2fs -h``, ``e2fsck -fn``, ``debugfs``)."""

from __future__ import annotations

import dataclasses
import re
import shutil
from pathlib import Path

from .paths import ROOT_IN_OUTER
from .rootfs import RootImage
from .tools import _run


@dataclasses.dataclass(frozen=True)
class FsCheck:
    """What ``dumpe2fs -h`` and ``e2fsck -fn`` say about one ext4 image."""

    name: str
    image: Path
    state: str
    features: tuple[str, ...]
    e2fsck_rc: int
    e2fsck_output: str

    @property
    def needs_recovery(self) -> bool:
        """The journal still holds transactions: the filesystem was not unmounted."""
        return "needs_recovery" in self.features

    @property
    def clean(self) -> bool:
        """State clean, nothing to recover, and e2fsck found no problem."""
        return self.state == "clean" and not self.needs_recovery and self.e2fsck_rc == 0

    def describe(self) -> str:
        """One line for assertion messages."""
        return (f"{self.name} ({self.image.name}): state={self.state!r} "
                f"needs_recovery={self.needs_recovery} e2fsck_rc={self.e2fsck_rc}\n"
                f"{self.e2fsck_output.strip()}")


def check_fs(image: Path, name: str) -> FsCheck:
    """Read-only checks of one ext4 image (never mounted, never modified)."""
    dump = _run(["dumpe2fs", "-h", image], check=False, timeout=60)
    text = dump.stdout + dump.stderr
    state = re.search(r"^Filesystem state:\s*(.+?)\s*$", text, re.M)
    features = re.search(r"^Filesystem features:\s*(.+?)\s*$", text, re.M)
    fsck = _run(["e2fsck", "-fn", image], check=False, timeout=120)
    return FsCheck(
        name=name, image=image, state=state.group(1) if state else "unknown",
        features=tuple(features.group(1).split()) if features else (),
        e2fsck_rc=fsck.returncode, e2fsck_output=fsck.stdout + fsck.stderr,
    )


def extract_file(image: Path, guest_path: str, dest: Path) -> Path:
    """Copy one file out of an ext4 image with ``debugfs`` (no mount)."""
    if dest.exists():
        dest.unlink()
    proc = _run(["debugfs", "-R", f"dump {guest_path} {dest}", image], check=False, timeout=300)
    if not dest.exists():
        raise FileNotFoundError(f"{guest_path} not in {image}: {proc.stderr.strip()}")
    if shutil.which("fallocate") and dest.stat().st_size > 1 << 20:
        # debugfs writes the holes of a disk image as zeros; give the space back.
        _run(["fallocate", "--dig-holes", dest], check=False)
    return dest


def extract_root(image: RootImage) -> Path:
    """The guest's root filesystem image as the guest left it (copied out for layout loop)."""
    if image.layout == "loop":
        extract_file(image.disk, f"/{ROOT_IN_OUTER}", image.root)
    return image.root


def read_file(image: RootImage, guest_path: str) -> bytes:
    """A file from the guest's root filesystem, read after the VM exited."""
    root = extract_root(image)
    out = image.workdir / "extracted.tmp"
    try:
        return extract_file(root, guest_path, out).read_bytes()
    finally:
        out.unlink(missing_ok=True)


@dataclasses.dataclass(frozen=True)
class CleanReport:
    """Checks of every filesystem of a scenario: ``root`` and, for layout loop, ``outer``."""

    checks: dict[str, FsCheck]

    @property
    def clean(self) -> bool:
        """Every filesystem was left clean."""
        return all(c.clean for c in self.checks.values())

    def describe(self) -> str:
        """Every check, for assertion messages."""
        return "\n".join(c.describe() for c in self.checks.values())


def check_clean(image: RootImage) -> CleanReport:
    """After the VM exited: check the root image and, for layout loop, the outer one."""
    checks = {}
    if image.layout == "loop":
        checks["outer"] = check_fs(image.disk, "outer")
    checks["root"] = check_fs(extract_root(image), "root")
    return CleanReport(checks)
