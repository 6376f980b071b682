"""Host tools: which are missing, running them with a deadline, locks, atomic builds, files."""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from .paths import E2FSPROGS_INSTALL, QEMU, QEMU_INSTALL


class AssetsUnavailable(Exception):
    """A tool or download the VM tests need is missing; the message says how to get it."""


def _run(cmd: Sequence[str | os.PathLike[str]], *, timeout: float = 120, cwd: Path | None = None,
         check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a host tool with a deadline; on failure raise with its output attached."""
    proc = subprocess.run(
        [os.fspath(c) for c in cmd], cwd=cwd, capture_output=True, text=True,
        timeout=timeout, check=False, stdin=subprocess.DEVNULL,
    )
    if check and proc.returncode != 0:
        raise RuntimeError(
            f"{shlex.join(os.fspath(c) for c in cmd)} exited {proc.returncode}\n"
            f"{proc.stdout}{proc.stderr}"
        )
    return proc


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive flock on ``path`` (created if needed) for the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def _building(final: Path) -> Iterator[Path]:
    """Yield a fresh sibling directory; on success rename it to ``final`` atomically."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    tmp.chmod(0o755)  # mkdtemp's 0700 would hide the asset from unprivileged readers
    try:
        yield tmp
        os.rename(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _safe(name: str) -> str:
    """A version string turned into a file-name component."""
    return re.sub(r"[^A-Za-z0-9.+-]", "_", name)


def _write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to a new inode (never through a hardlink into the cache)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() or path.is_symlink():
        path.unlink()
    path.write_bytes(data)
    path.chmod(mode)


def _link_or_copy(src: Path, dest: Path) -> None:
    """Hardlink ``src`` to ``dest`` (mtime kept, so .pyc stay valid); copy across devices."""
    try:
        os.link(src, dest)
    except OSError:
        shutil.copy2(src, dest)


def missing_tools() -> str | None:
    """Why the VM tests cannot run on this host (with the install command), or None."""
    if shutil.which(QEMU) is None:
        return f"{QEMU} not found: install it with `{QEMU_INSTALL}`"
    for tool in ("mke2fs", "debugfs", "dumpe2fs", "e2fsck"):
        if shutil.which(tool) is None:
            return f"{tool} not found: install it with `{E2FSPROGS_INSTALL}`"
    if not _mke2fs_has_d():
        return f"mke2fs has no -d option (e2fsprogs >= 1.43 needed): `{E2FSPROGS_INSTALL}`"
    return None


def _mke2fs_has_d() -> bool:
    """True if this mke2fs can populate an image from a directory (-d)."""
    proc = _run(["mke2fs", "-V"], check=False)
    match = re.search(r"mke2fs (\d+)\.(\d+)", proc.stdout + proc.stderr)
    return match is not None and (int(match.group(1)), int(match.group(2))) >= (1, 43)
