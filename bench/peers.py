"""Find, and install when missing, the programs roost is measured against.

Debian packages: tini, dumb-init, catatonit, runit, s6 (installed with a
policy-rc.d that forbids starting any service, in place only for the install).
PyPI: supervisor and circus (and matplotlib for the plots) in the bench's own venv,
.cache/bench-venv, made with the real interpreter so no pyenv shim is ever timed.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from bench.core import BENCH_VENV, ROOST, real_python

APT_PACKAGES = ["tini", "dumb-init", "catatonit", "runit", "s6"]
# Pinned the same as pyproject.toml's `bench` extra.
PYPI_PINS = ["supervisor==4.3.0", "circus==0.19.0", "matplotlib==3.11.2"]
POLICY_RC_D = Path("/usr/sbin/policy-rc.d")
POLICY_DENY = (
    "#!/bin/sh\n# Installed by roost's bench for one apt-get run: start no service.\nexit 101\n"
)

# binary -> Debian package that ships it
APT_BINARIES = {
    "tini": "tini",
    "dumb-init": "dumb-init",
    "catatonit": "catatonit",
    "runsvdir": "runit",
    "runsv": "runit",
    "sv": "runit",
    "s6-svscan": "s6",
    "s6-svscanctl": "s6",
    "s6-supervise": "s6",
    "s6-svstat": "s6",
}


@dataclasses.dataclass
class Peers:
    """Paths and versions of what was found; `missing` says why a peer is absent."""

    paths: dict[str, str] = dataclasses.field(default_factory=dict)
    versions: dict[str, str] = dataclasses.field(default_factory=dict)
    missing: dict[str, str] = dataclasses.field(default_factory=dict)
    bench_python: str = ""

    def has(self, *names: str) -> bool:
        """Whether every named binary was found."""
        return all(n in self.paths for n in names)

    def why_not(self, *names: str) -> str:
        """The reason the first missing binary is missing."""
        for n in names:
            if n not in self.paths:
                return self.missing.get(n, f"{n} not found")
        return ""


def _with_policy_deny(action: Callable[[], subprocess.CompletedProcess[str]]) -> (
    subprocess.CompletedProcess[str]
):
    """Run action with a policy-rc.d that exits 101, then put back what was there."""
    saved = POLICY_RC_D.read_bytes() if POLICY_RC_D.exists() else None
    saved_mode = POLICY_RC_D.stat().st_mode if saved is not None else None
    POLICY_RC_D.write_text(POLICY_DENY)
    os.chmod(POLICY_RC_D, 0o755)
    try:
        return action()
    finally:
        if saved is None:
            POLICY_RC_D.unlink(missing_ok=True)
        else:
            POLICY_RC_D.write_bytes(saved)
            assert saved_mode is not None
            os.chmod(POLICY_RC_D, saved_mode & 0o7777)


def _apt_install(pkgs: list[str], log: Callable[[str], None]) -> str:
    """Install Debian packages without starting services; '' or the error."""
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")

    def install() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["apt-get", "install", "-y", "--no-install-recommends", *pkgs],
            capture_output=True, text=True, env=env, timeout=600,
        )

    log(f"installing Debian packages: {' '.join(pkgs)}")
    proc = _with_policy_deny(install)
    if proc.returncode != 0:
        # A fresh machine may have no package lists yet.
        subprocess.run(["apt-get", "update"], capture_output=True, env=env, timeout=600)
        proc = _with_policy_deny(install)
    return "" if proc.returncode == 0 else (proc.stderr.strip().splitlines() or ["?"])[-1]


def _venv_install(log: Callable[[str], None]) -> str:
    """Create the bench venv and install the PyPI peers; '' or the error."""
    py = BENCH_VENV / "bin" / "python"
    if not py.exists():
        log(f"creating {BENCH_VENV} with {real_python()}")
        proc = subprocess.run(
            [real_python(), "-m", "venv", str(BENCH_VENV)],
            capture_output=True, text=True, timeout=300,
        )
        if proc.returncode != 0:
            return proc.stderr.strip()
    check = subprocess.run(
        [str(py), "-c", "import supervisor, circus, matplotlib, zmq"],
        capture_output=True, timeout=120,
    )
    have = _pypi_versions(py)
    if check.returncode == 0 and all(have.get(p.split("==")[0]) == p.split("==")[1]
                                     for p in PYPI_PINS):
        return ""
    log(f"installing into the bench venv: {' '.join(PYPI_PINS)}")
    proc = subprocess.run(
        [str(py), "-m", "pip", "install", "--quiet", *PYPI_PINS],
        capture_output=True, text=True, timeout=900,
    )
    return "" if proc.returncode == 0 else proc.stderr.strip()[-500:]


def _pypi_versions(py: Path) -> dict[str, str]:
    code = (
        "import importlib.metadata as m\n"
        "for n in ('supervisor', 'circus', 'matplotlib', 'pyzmq', 'tornado'):\n"
        "    try: print(n, m.version(n))\n"
        "    except m.PackageNotFoundError: pass\n"
    )
    proc = subprocess.run([str(py), "-c", code], capture_output=True, text=True, timeout=60)
    return dict(line.split(None, 1) for line in proc.stdout.splitlines() if " " in line)


def _deb_version(pkg: str) -> str:
    proc = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True, text=True, timeout=30
    )
    return proc.stdout.strip() if proc.returncode == 0 else ""


def ensure(log: Callable[[str], None], install: bool = True) -> Peers:
    """Find every peer, installing the missing ones first when `install` is true."""
    peers = Peers()
    missing_pkgs = sorted({pkg for b, pkg in APT_BINARIES.items() if shutil.which(b) is None})
    apt_error = ""
    if missing_pkgs and install:
        if os.geteuid() != 0:
            apt_error = "not root: cannot apt-get install"
        else:
            apt_error = _apt_install(missing_pkgs, log)
    for b, pkg in APT_BINARIES.items():
        found = shutil.which(b)
        if found:
            peers.paths[b] = found
        else:
            peers.missing[b] = f"{pkg} not installed ({apt_error or 'install skipped'})"
    for pkg in APT_PACKAGES:
        v = _deb_version(pkg)
        if v:
            peers.versions[pkg] = f"{v} (Debian)"

    venv_error = _venv_install(log) if install else ""
    py = BENCH_VENV / "bin" / "python"
    if py.exists():
        peers.bench_python = str(py)
        for name, v in _pypi_versions(py).items():
            peers.versions[name] = f"{v} (PyPI)"
    for b in ("supervisord", "supervisorctl", "circusd", "circusctl"):
        p = BENCH_VENV / "bin" / b
        if p.exists():
            peers.paths[b] = str(p)
        else:
            peers.missing[b] = f"{b} not in {BENCH_VENV} ({venv_error or 'install skipped'})"
    return peers


def roost_status(installed: Path) -> tuple[bool, str]:
    """Whether the worktree's roost and the installed one work (`roost --help`), and why not."""
    for launcher in (ROOST, installed):
        if not launcher.exists():
            return False, f"{launcher} does not exist yet"
        try:
            proc = subprocess.run([str(launcher), "--help"], capture_output=True, text=True,
                                  timeout=30)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return False, f"`{launcher} --help` failed: {exc}"
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            return False, f"`{launcher} --help` exited {proc.returncode}: {tail}"
    return True, ""
