"""Boot roost as PID 1 of a real Linux kernel under qemu, and inspect what it left on disk.

The pieces, each usable on its own:

* :func:`ensure_assets` fetches Debian's kernel and ``busybox-static`` with ``apt-get download``,
  extracts the ELF ``vmlinux`` (fast PVH boot) and the few modules a virtio ext4 root needs,
  stages the interpreter that runs these tests, and writes the stage-0 initramfs.  Everything is
  cached under ``$ROOST_VM_CACHE`` (default ``<repo>/.cache/vm``), built under a lock and moved
  into place with an atomic rename.
* :func:`build_root` writes an ext4 root image with ``mke2fs -d`` (no mounting on the host):
  the interpreter, roost's source tree behind ``/usr/bin/roost`` and the ``/sbin/init`` family of
  symlinks, plus whatever files a scenario adds.  Layout ``loop`` wraps that image in an outer
  ext4 filesystem, so the guest's root is a loop device backed by a file on another filesystem.
* :func:`boot` runs qemu with a hard deadline and returns the console, timings, verdict lines
  (``ROOST-VM <key> <value...>``) and how the machine ended (power-off, reboot, halt, panic).
* :func:`check_clean` reads the images after the VM is gone (``dumpe2fs -h``, ``e2fsck -fn``)
  and says whether every filesystem was left clean.

Run ``python -m tests.vm.harness --help`` from the repository root for the manual front end.

The modules, in dependency order:

* ``paths``: the repository, the asset cache, the guest's fixed paths and names;
* ``tools``: host tools (which are missing, running them), locks, atomic builds;
* ``debian``: apt-cache look-ups, ``apt-get download``, reading a .deb;
* ``kernel``: the kernel package, its vmlinux and modules (ELF, .modinfo, load order);
* ``python_tree``: the staged interpreter; ``initramfs``: stage 0; ``assets``: all of them;
* ``rootfs``: the ext4 root image; ``console``: verdicts and :class:`BootResult`;
* ``qemu``: the qemu process and one boot; ``fscheck``: the images after the VM;
* ``workbench``: :class:`VM`, the per-test fixture; ``cli``: the manual front end.
"""

from __future__ import annotations

from .assets import Assets, ensure_assets
from .console import BootError, BootResult, ConsoleLine, Verdict, parse_verdicts
from .fscheck import CleanReport, FsCheck, check_clean, read_file
from .initramfs import _cpio
from .kernel import Kernel, _ModIndex
from .paths import GUEST_LIB, GUEST_PYTHON, PLACEHOLDER_INIT, REPO, ROOST_INIT
from .qemu import boot
from .rootfs import ExtraFile, RootImage, Symlink, build_root, script
from .tools import AssetsUnavailable, missing_tools
from .workbench import VM

__all__ = [
    "GUEST_LIB",
    "GUEST_PYTHON",
    "PLACEHOLDER_INIT",
    "REPO",
    "ROOST_INIT",
    "VM",
    "Assets",
    "AssetsUnavailable",
    "BootError",
    "BootResult",
    "CleanReport",
    "ConsoleLine",
    "ExtraFile",
    "FsCheck",
    "Kernel",
    "RootImage",
    "Symlink",
    "Verdict",
    "_ModIndex",  # for test_harness's host-only tests
    "_cpio",
    "boot",
    "build_root",
    "check_clean",
    "ensure_assets",
    "missing_tools",
    "parse_verdicts",
    "read_file",
    "script",
]
