"""roost installed as its users install it, for the container-init scenarios.

A wheel of the worktree, installed with pip into a fresh venv and system-wide: the
layout `pip install` gives Debian's /usr/bin/python3 (/usr/local/bin, dist-packages),
under a --root of the bench's own, so the machine's /usr/local is untouched. Both are
compiled once, as pip does on a real install. The worktree's editable venv is not
measured as a container init: its launcher would find roost through a .pth file.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from bench.core import OUT, REPO, real_python

INSTALLS = OUT / "installs"
VENV_BIN = INSTALLS / "venv" / "bin"
SYSTEM_BIN = INSTALLS / "system" / "usr" / "local" / "bin"
SYSTEM_PYTHON = "/usr/bin/python3"


def build(log: Callable[[str], None]) -> str:
    """Build and install both; return why not, or "" when both are in place."""
    shutil.rmtree(INSTALLS, ignore_errors=True)
    INSTALLS.mkdir(parents=True)
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    try:
        subprocess.run([*pip, "wheel", "--no-deps", "-w", str(INSTALLS / "wheel"), str(REPO)],
                       check=True, timeout=300, capture_output=True)
        (wheel,) = (INSTALLS / "wheel").glob("roost-*.whl")
        venv = INSTALLS / "venv"
        subprocess.run([real_python(), "-m", "venv", "--without-pip", str(venv)],
                       check=True, timeout=60, capture_output=True)
        subprocess.run([*pip, "--python", str(venv / "bin" / "python"), "install", "--no-deps",
                        str(wheel)], check=True, timeout=120, capture_output=True)
        if os.access(SYSTEM_PYTHON, os.X_OK):
            subprocess.run([*pip, "--python", SYSTEM_PYTHON, "install", "--root",
                            str(INSTALLS / "system"), "--no-deps", "--no-warn-script-location",
                            str(wheel)], check=True, timeout=120, capture_output=True,
                           env={**os.environ, "PIP_ROOT_USER_ACTION": "ignore"})
        for bin_dir in (VENV_BIN, SYSTEM_BIN):
            if bin_dir.is_dir():
                subprocess.run([interpreter(bin_dir), "-m", "compileall", "-q",
                                str(bin_dir.parent / "lib")], check=True, timeout=120,
                               capture_output=True)
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        err = getattr(exc, "stderr", b"") or b""
        return f"cannot install roost's wheel: {exc} {err.decode(errors='replace')[-300:]}"
    log(f"roost installed from {wheel.name}: {VENV_BIN.parent}, {SYSTEM_BIN.parent}")
    return ""


def interpreter(bin_dir: Path) -> str:
    """The interpreter pip wrote into an install's roost-python."""
    return (bin_dir / "roost-python").read_text().splitlines()[0].removeprefix("#!")

