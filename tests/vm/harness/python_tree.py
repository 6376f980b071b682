"""The interpreter running the tests, staged with a pruned stdlib for every guest image."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from .paths import PY_VER
from .tools import AssetsUnavailable, _building, _run

# Bump when the staged interpreter tree's contents change, so stale caches are not reused.
PYTHON_TREE_FORMAT = 2
# Stdlib parts no scenario needs: they only cost image size and build time.
STDLIB_PRUNE_TOP = {
    "test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "site-packages",
    "pydoc_data", "distutils", "__phello__",
}
STDLIB_PRUNE_ANY = {"test", "tests", "idle_test"}
DYNLOAD_PRUNE = ("_tkinter", "_test", "_xxtest", "_ctypes_test", "xxlimited", "_xxsub")


def _base_python() -> tuple[Path, Path]:
    """The real interpreter behind the running one (a venv's base) and its stdlib directory."""
    exe = Path(getattr(sys, "_base_executable", "") or sys.executable).resolve()
    stdlib = Path(sys.base_prefix) / "lib" / f"python{PY_VER}"
    if not (stdlib / "os.py").exists():
        raise AssetsUnavailable(f"cannot find the stdlib of {exe} (looked in {stdlib})")
    return exe, stdlib


def _ldd(files: Sequence[Path]) -> set[str]:
    """Absolute paths of the shared libraries (and loader) the given ELF files need."""
    out = _run(["ldd", *files], timeout=60, check=False).stdout
    libs: set[str] = set()
    for line in out.splitlines():
        if "not found" in line:
            raise AssetsUnavailable(f"a shared library of the interpreter is missing: {line}")
        match = re.search(r"(?:=>\s*)?(/\S+)\s+\(0x", line)
        if match:
            libs.add(match.group(1))
    return libs


def _copy_elf(src: Path, dest: Path, strip: str | None) -> None:
    """Copy a binary, stripped of symbols when ``strip`` is available (smaller, faster image)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if strip:
        proc = _run([strip, "--strip-unneeded", "-o", dest, src], check=False)
        if proc.returncode == 0:
            dest.chmod(src.stat().st_mode & 0o777)
            return
    shutil.copy2(src, dest)


def _stage_python(out: Path) -> None:
    """Write the guest's /usr/bin/python, pruned stdlib and every shared library into ``out``."""
    exe, stdlib = _base_python()
    multiarch = "x86_64-linux-gnu"
    strip = shutil.which("strip")
    dest_std = out / "usr" / "lib" / f"python{PY_VER}"
    elves = [exe]
    for root, dirs, files in os.walk(stdlib):
        rel = Path(root).relative_to(stdlib)
        dirs[:] = sorted(
            d for d in dirs
            if d not in STDLIB_PRUNE_ANY
            and not (rel == Path(".") and (d in STDLIB_PRUNE_TOP or d.startswith("config-")))
        )
        (dest_std / rel).mkdir(parents=True, exist_ok=True)
        for name in files:
            src = Path(root) / name
            if name.endswith(".so"):
                if rel.name == "lib-dynload" and name.startswith(DYNLOAD_PRUNE):
                    continue
                _copy_elf(src, dest_std / rel / name, strip)
                elves.append(src)
            elif name.endswith(".py") or (
                    name.endswith(f".cpython-{sys.version_info.major}{sys.version_info.minor}.pyc")
                    and rel.name == "__pycache__"):
                # A copy, not a link: the cache must not share inodes with the host's stdlib.
                # copy2 keeps the mtime the .pyc files were validated against.
                shutil.copy2(src, dest_std / rel / name)
    _copy_elf(exe, out / "usr" / "bin" / f"python{PY_VER}", strip)
    (out / "usr" / "bin" / "python3").symlink_to(f"python{PY_VER}")
    base = Path(sys.base_prefix).resolve()
    for lib in sorted(_ldd(elves)):
        real = Path(lib).resolve()
        if real.is_relative_to(base):
            # libpython goes where the loader looks without the host's RUNPATH.
            dest = out / "usr" / "lib" / multiarch / Path(lib).name
        else:
            dest = out / lib.lstrip("/")
        if not dest.exists():
            _copy_elf(real, dest, strip if ".so" in dest.name and "ld-linux" not in lib else None)


def ensure_python_tree(cache: Path, timings: dict[str, float]) -> Path:
    """The staged interpreter tree shared by every root image (built once per interpreter)."""
    exe, stdlib = _base_python()
    libpython = Path(sys.base_prefix) / "lib" / f"libpython{PY_VER}.so.1.0"
    stamp = [PYTHON_TREE_FORMAT, str(exe), sys.version, exe.stat().st_mtime_ns,
             libpython.stat().st_mtime_ns if libpython.exists() else 0,
             (stdlib / "os.py").stat().st_mtime_ns]
    key = hashlib.sha256(json.dumps(stamp).encode()).hexdigest()[:16]
    final = cache / "python" / key
    if not final.exists():
        t0 = time.monotonic()
        with _building(final) as out:
            _stage_python(out)
        timings["python_tree"] = time.monotonic() - t0
    return final
