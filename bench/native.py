"""Build the small C helpers of bench/native/ into bench/out/bin (static, so exec is cheap)."""

from __future__ import annotations

import shutil
import subprocess

from bench.core import BENCH_DIR, BIN, Skip

SOURCES = {
    "nsinit": "nsinit.c",
    "bench-idle": "idle.c",
    "bench-crashy": "crashy.c",
    "bench-orphans": "orphans.c",
    "bench-sigwin": "sigwin.c",
}


def build() -> None:
    """Compile every helper whose binary is missing or older than its source."""
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        raise Skip("no C compiler (gcc) to build the bench helpers")
    BIN.mkdir(parents=True, exist_ok=True)
    for name, src in SOURCES.items():
        source = BENCH_DIR / "native" / src
        target = BIN / name
        if target.exists() and target.stat().st_mtime >= source.stat().st_mtime:
            continue
        cmd = [cc, "-O2", "-Wall", "-Wextra", "-static", "-o", str(target), str(source)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            # A missing static libc is the likely cause: fall back to dynamic linking.
            cmd.remove("-static")
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise Skip(f"cannot build {name}: {proc.stderr.strip()}")


def path(name: str) -> str:
    """Absolute path of a built helper."""
    return str(BIN / name)
