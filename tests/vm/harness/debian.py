"""Debian packages: the current kernel package and versions (apt-cache), .deb download, members."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import tarfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from .tools import AssetsUnavailable, _run


def _apt(cmd: Sequence[str], timeout: float = 120) -> str:
    """Run an apt tool, turning its absence or failure into AssetsUnavailable."""
    if shutil.which(cmd[0]) is None:
        raise AssetsUnavailable(f"`{cmd[0]}` is missing: the VM assets come from Debian packages")
    proc = _run(cmd, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise AssetsUnavailable(
            f"`{shlex.join(cmd)}` failed (exit {proc.returncode}); run `apt-get update` first?\n"
            f"{proc.stdout}{proc.stderr}")
    return proc.stdout


def kernel_package() -> str:
    """The versioned kernel package ``linux-image-amd64`` currently depends on."""
    override = os.environ.get("ROOST_VM_KERNEL_PACKAGE")
    if override:
        return override
    out = _apt(["apt-cache", "depends", "linux-image-amd64"])
    match = re.search(r"^\s*\|?Depends:\s*(linux-image-[^\s<>]+-amd64)\s*$", out, re.M)
    if not match:
        raise AssetsUnavailable(f"cannot find the kernel linux-image-amd64 depends on:\n{out}")
    return match.group(1)


def candidate_version(package: str) -> str:
    """The version ``apt-get download`` would fetch for ``package``."""
    out = _apt(["apt-cache", "policy", package])
    match = re.search(r"Candidate:\s*(\S+)", out)
    if not match or match.group(1) == "(none)":
        raise AssetsUnavailable(f"no installable candidate for {package}:\n{out}")
    return match.group(1)


def _download(package: str, into: Path) -> Path:
    """``apt-get download`` one package into ``into``; return the .deb."""
    into.mkdir(parents=True, exist_ok=True)
    if shutil.which("apt-get") is None:
        raise AssetsUnavailable("`apt-get` is missing: the VM assets come from Debian packages")
    proc = _run(["apt-get", "download", "-q", package], cwd=into, timeout=600, check=False)
    debs = sorted(into.glob(f"{package}_*.deb"))
    if proc.returncode != 0 or not debs:
        raise AssetsUnavailable(
            f"`apt-get download {package}` failed (exit {proc.returncode}); the VM tests need "
            f"network access to a Debian mirror (and `apt-get update`).\n{proc.stderr}")
    return debs[0]


def _deb_members(deb: Path) -> Iterator[tuple[str, tarfile.TarFile, tarfile.TarInfo]]:
    """Stream the data members of a .deb (``dpkg-deb --fsys-tarfile``), names without './'."""
    if shutil.which("dpkg-deb") is None:
        raise AssetsUnavailable("`dpkg-deb` is missing: apt-get install -y dpkg")
    proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", os.fspath(deb)],
                            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    assert proc.stdout is not None
    try:
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
            for member in tar:
                yield member.name.removeprefix("./"), tar, member
    finally:
        proc.stdout.close()
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)


def _read_member(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    """The bytes of a regular-file tar member."""
    stream = tar.extractfile(member)
    if stream is None:
        raise ValueError(f"{member.name} is not a regular file")
    return stream.read()
