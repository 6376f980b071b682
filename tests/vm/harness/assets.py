"""Everything boots share, fetched and built once under a lock: kernel, busybox, python, initrd."""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path

from .debian import _deb_members, _download, _read_member, candidate_version
from .initramfs import ensure_initramfs
from .kernel import Kernel, ensure_kernel
from .paths import cache_dir
from .python_tree import ensure_python_tree
from .tools import AssetsUnavailable, _building, _locked, _safe, _write


@dataclasses.dataclass(frozen=True)
class Assets:
    """Everything shared by all boots: kernel, busybox, staged interpreter, initramfs."""

    kernel: Kernel
    busybox: Path
    python_tree: Path
    initramfs: Path
    timings: dict[str, float]


def ensure_busybox(cache: Path, timings: dict[str, float]) -> Path:
    """A static busybox from Debian's busybox-static, fetched once per version."""
    package = "busybox-static"
    try:
        version = candidate_version(package)
    except AssetsUnavailable:
        cached = sorted((cache / "busybox").glob("*/busybox"), key=lambda p: p.stat().st_mtime)
        if cached:
            return cached[-1]
        raise
    final = cache / "busybox" / _safe(version)
    if not (final / "busybox").exists():
        t0 = time.monotonic()
        with _building(final) as out, tempfile.TemporaryDirectory(dir=cache) as work:
            deb = _download(package, Path(work))
            for name, tar, member in _deb_members(deb):
                if name == "bin/busybox":
                    _write(out / "busybox", _read_member(tar, member), 0o755)
                    break
            else:
                raise AssetsUnavailable(f"{deb.name} holds no bin/busybox")
        timings["busybox_fetch"] = time.monotonic() - t0
    return final / "busybox"


def ensure_assets(cache: Path | None = None) -> Assets:
    """Fetch and build (once, under a lock) everything boots share; return where it is."""
    cache = cache or cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    with _locked(cache / ".lock"):
        kernel = ensure_kernel(cache, timings)
        busybox = ensure_busybox(cache, timings)
        python_tree = ensure_python_tree(cache, timings)
        initramfs = ensure_initramfs(cache, kernel, busybox, timings)
    timings["total"] = time.monotonic() - t0
    return Assets(kernel=kernel, busybox=busybox, python_tree=python_tree,
                  initramfs=initramfs, timings=timings)
