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
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import ctypes
import dataclasses
import fcntl
import hashlib
import json
import lzma
import os
import re
import selectors
import shlex
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
GUEST_DIR = HERE / "guest"
DEFAULT_CACHE = REPO / ".cache" / "vm"
ROOST_SRC = REPO / "src" / "roost"

QEMU = "qemu-system-x86_64"
QEMU_INSTALL = "apt-get install -y --no-install-recommends qemu-system-x86"
E2FSPROGS_INSTALL = "apt-get install -y --no-install-recommends e2fsprogs"

PY_VER = f"{sys.version_info.major}.{sys.version_info.minor}"
#: The interpreter inside the guest, and the shebang guest scripts use.
GUEST_PYTHON = f"/usr/bin/python{PY_VER}"
GUEST_SHEBANG = f"#!{GUEST_PYTHON} -IS"
#: Where the guest-side helpers (say.py, the placeholder PID 1) live in the image.
GUEST_LIB = "/usr/lib/roost-vm"
#: PID 1 choices: roost itself (argv[0] dispatch through the /sbin/init symlink) or the
#: placeholder that exercises the harness.  Scenarios pick one with ``boot(init=...)``.
ROOST_INIT = "/sbin/init"
PLACEHOLDER_INIT = f"{GUEST_LIB}/pid1.py"
#: Verdict lines start with this word; see guest/say.py.
VERDICT_PREFIX = "ROOST-VM"
#: Printed by stage 0 at the top of every boot; counts boots.
BOOT_MARKER = f"{VERDICT_PREFIX} stage0 start"
ROOT_IN_OUTER = "root.img"

# Modules a virtio ext4 root needs; their dependencies come from each module's .modinfo.
# loop is wanted only when it is modular (it backs layout "loop").
REQUIRED_MODULES = ("virtio_pci", "virtio_blk", "ext4")
OPTIONAL_MODULES = ("loop",)

# Bump when the staged interpreter tree's contents change, so stale caches are not reused.
PYTHON_TREE_FORMAT = 2
# Stdlib parts no scenario needs: they only cost image size and build time.
STDLIB_PRUNE_TOP = {
    "test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "site-packages",
    "pydoc_data", "distutils", "__phello__",
}
STDLIB_PRUNE_ANY = {"test", "tests", "idle_test"}
DYNLOAD_PRUNE = ("_tkinter", "_test", "_xxtest", "_ctypes_test", "xxlimited", "_xxsub")
# busybox applets linked into the root image for scenario scripts.  init, poweroff, reboot
# and halt are deliberately absent: those names belong to roost.
ROOT_APPLETS = (
    "sh", "cat", "echo", "sleep", "ls", "mkdir", "rm", "touch", "sync", "true", "false",
    "mount", "umount", "ps", "kill", "grep", "dd", "stat", "readlink", "losetup", "df",
    "head", "tail", "wc", "sed", "printf", "test", "[", "env", "id", "chmod", "ln", "cp",
    "mv", "uname", "dmesg", "hostname", "pidof", "timeout", "yes", "nproc", "free",
)


class AssetsUnavailable(Exception):
    """A tool or download the VM tests need is missing; the message says how to get it."""


class BootError(AssertionError):
    """qemu missed its deadline or boot limit; carries the :class:`BootResult` and the console."""

    def __init__(self, message: str, result: BootResult) -> None:
        super().__init__(f"{message}\n{result.describe()}")
        self.result = result


# ----------------------------------------------------------------------------- small utilities


def cache_dir() -> Path:
    """The asset cache: ``$ROOST_VM_CACHE`` or ``<repo>/.cache/vm``."""
    return Path(os.environ.get("ROOST_VM_CACHE") or DEFAULT_CACHE)


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


# ----------------------------------------------------------------------------- ELF, modules


def _elf_sections(data: bytes) -> dict[str, tuple[int, int]]:
    """Section name -> (offset, size) of a little-endian ELF64 file."""
    if data[:4] != b"\x7fELF" or data[4] != 2:
        raise ValueError("not an ELF64 file")
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    headers = [struct.unpack_from("<IIQQQQ", data, shoff + i * shentsize) for i in range(shnum)]
    strtab = headers[shstrndx][4]
    sections = {}
    for name_off, _type, _flags, _addr, offset, size in headers:
        start = strtab + name_off
        sections[data[start:data.index(b"\0", start)].decode()] = (offset, size)
    return sections


def modinfo(data: bytes) -> dict[str, list[str]]:
    """The ``key=value`` pairs of a kernel module's ``.modinfo`` section."""
    offset, size = _elf_sections(data)[".modinfo"]
    info: dict[str, list[str]] = {}
    for item in data[offset:offset + size].split(b"\0"):
        key, sep, value = item.decode(errors="replace").partition("=")
        if sep:
            info.setdefault(key, []).append(value)
    return info


def _has_pvh_note(elf: bytes) -> bool:
    """True if an ELF kernel carries the XEN_ELFNOTE_PHYS32_ENTRY note qemu boots via PVH."""
    (phoff,) = struct.unpack_from("<Q", elf, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    for i in range(phnum):
        p_type, _flags, p_offset, _v, _p, p_filesz = struct.unpack_from(
            "<IIQQQQ", elf, phoff + i * phentsize)
        if p_type != 4:  # PT_NOTE
            continue
        pos, end = p_offset, p_offset + p_filesz
        while pos + 12 <= end:
            namesz, descsz, ntype = struct.unpack_from("<III", elf, pos)
            name = elf[pos + 12:pos + 12 + namesz].rstrip(b"\0")
            if name == b"Xen" and ntype == 18:
                return True
            pos += 12 + (namesz + 3) // 4 * 4 + (descsz + 3) // 4 * 4
    return False


def extract_vmlinux(bzimage: bytes) -> bytes:
    """The ELF vmlinux inside a bzImage (boot protocol >= 2.08), checked for a PVH entry."""
    if bzimage[0x202:0x206] != b"HdrS":
        raise ValueError("not a bzImage")
    (version,) = struct.unpack_from("<H", bzimage, 0x206)
    if version < 0x208:
        raise ValueError(f"boot protocol {version:#x} has no payload fields")
    setup_sects = bzimage[0x1F1] or 4
    payload_offset, payload_length = struct.unpack_from("<II", bzimage, 0x248)
    start = (setup_sects + 1) * 512 + payload_offset
    payload = bzimage[start:start + payload_length]
    if payload.startswith(b"\xfd7zXZ\0"):
        # The build appends the uncompressed size after the xz stream: unused_data absorbs it.
        elf = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(payload)
    elif payload.startswith(b"\x1f\x8b"):
        elf = zlib.decompressobj(wbits=31).decompress(payload)
    elif payload.startswith(b"\x28\xb5\x2f\xfd") and shutil.which("zstd"):
        elf = subprocess.run(["zstd", "-dcq"], input=payload, capture_output=True,
                             check=True, timeout=60).stdout
    else:
        raise ValueError(f"unsupported kernel payload (magic {payload[:6].hex()})")
    if not elf.startswith(b"\x7fELF"):
        raise ValueError("decompressed payload is not ELF")
    if not _has_pvh_note(elf):
        raise ValueError("vmlinux has no PVH entry note")
    return elf


def _decompress_module(name: str, data: bytes) -> bytes:
    """A module's ELF bytes, whatever compression the package shipped it with."""
    if name.endswith(".ko"):
        return data
    if name.endswith(".ko.xz"):
        return lzma.decompress(data)
    if name.endswith(".ko.gz"):
        return zlib.decompress(data, wbits=31)
    if name.endswith(".ko.zst"):
        if not shutil.which("zstd"):
            raise AssetsUnavailable("kernel modules are zstd-compressed and `zstd` is missing: "
                                    "apt-get install -y zstd")
        return subprocess.run(["zstd", "-dcq"], input=data, capture_output=True, check=True,
                              timeout=60).stdout
    raise ValueError(f"not a module: {name}")


def _module_name(path: str) -> str:
    """Kernel module name of a path (``crc32c-intel.ko.xz`` -> ``crc32c_intel``)."""
    base = path.rsplit("/", 1)[-1]
    return base.split(".ko", 1)[0].replace("-", "_")


def _softdep_pre(info: Mapping[str, list[str]]) -> list[str]:
    """The ``pre:`` names of a module's softdep lines."""
    names: list[str] = []
    for line in info.get("softdep", []):
        section = None
        for token in line.split():
            if token.endswith(":"):
                section = token[:-1]
            elif section == "pre":
                names.append(token.replace("-", "_"))
    return names


@dataclasses.dataclass
class _ModIndex:
    path: dict[str, str] = dataclasses.field(default_factory=dict)      # name -> path in package
    depends: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    pre: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    aliases: dict[str, list[str]] = dataclasses.field(default_factory=dict)  # alias -> names
    builtin: set[str] = dataclasses.field(default_factory=set)

    def provider(self, name: str) -> str | None:
        """The module that provides ``name`` (itself, or one declaring it as an alias)."""
        if name in self.path:
            return name
        candidates = sorted(self.aliases.get(name, []))
        # The generic implementation loads on any CPU; accelerated variants may not.
        generic = [c for c in candidates if c.endswith("_generic")]
        preferred = generic or candidates
        return preferred[0] if preferred else None

    def load_order(self, wanted: Iterable[str]) -> list[str]:
        """Modules to insmod, dependencies (and softdep ``pre:``) first."""
        order: list[str] = []
        seen: set[str] = set()

        def visit(name: str, chain: tuple[str, ...]) -> None:
            if name in seen or name in self.builtin:
                return
            if name in chain:
                raise ValueError(f"module dependency cycle: {' -> '.join((*chain, name))}")
            for soft in self.pre.get(name, []):
                provider = self.provider(soft)
                if provider is not None:
                    visit(provider, (*chain, name))
            for dep in self.depends.get(name, []):
                visit(dep, (*chain, name))
            seen.add(name)
            order.append(name)

        for name in wanted:
            visit(name, ())
        return order

    def modules_dep(self, release: str) -> str:
        """This index in depmod's ``modules.dep`` format (paths relative to lib/modules/R)."""
        prefix = f"lib/modules/{release}/"
        lines = []
        for name in sorted(self.path):
            rel = self.path[name].removeprefix(prefix)
            deps = " ".join(self.path[d].removeprefix(prefix)
                            for d in self.depends.get(name, []) if d in self.path)
            lines.append(f"{rel}: {deps}".rstrip())
        return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- Debian packages


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


# ----------------------------------------------------------------------------- assets


@dataclasses.dataclass(frozen=True)
class Kernel:
    """A cached Debian kernel: boot image, module files in load order, provenance."""

    dir: Path
    package: str
    version: str
    release: str
    image: Path          # vmlinux (PVH ELF) when extraction worked, else the bzImage
    bzimage: Path
    pvh: bool
    modules: tuple[Path, ...]


@dataclasses.dataclass(frozen=True)
class Assets:
    """Everything shared by all boots: kernel, busybox, staged interpreter, initramfs."""

    cache: Path
    kernel: Kernel
    busybox: Path
    python_tree: Path
    initramfs: Path
    timings: dict[str, float]


def _kernel_from_manifest(path: Path) -> Kernel:
    """Load a cached kernel's manifest.json."""
    meta = json.loads((path / "manifest.json").read_text())
    return Kernel(
        dir=path, package=meta["package"], version=meta["version"], release=meta["release"],
        image=path / meta["image"], bzimage=path / "vmlinuz", pvh=meta["pvh"],
        modules=tuple(path / "modules" / m for m in meta["modules"]),
    )


def _build_kernel(package: str, version: str, out: Path, work: Path,
                  timings: dict[str, float]) -> None:
    """Download and unpack a kernel package into ``out`` (see :class:`Kernel`)."""
    t0 = time.monotonic()
    deb = _download(package, work)
    timings["kernel_download"] = time.monotonic() - t0

    # Pass 1: the boot image, modules.builtin, and every module's .modinfo.  The package has
    # no modules.dep (depmod writes it at install time), so the index is built from .modinfo.
    t0 = time.monotonic()
    index = _ModIndex()
    release = ""
    bzimage = b""
    for name, tar, member in _deb_members(deb):
        if not member.isfile():
            continue
        if name.startswith("boot/vmlinuz-"):
            bzimage = _read_member(tar, member)
            release = name.removeprefix("boot/vmlinuz-")
        elif name.startswith("boot/config-"):
            (out / "config").write_bytes(_read_member(tar, member))
        elif name.endswith("/modules.builtin"):
            text = _read_member(tar, member).decode()
            index.builtin.update(_module_name(line) for line in text.split())
        elif re.search(r"\.ko(\.xz|\.zst|\.gz)?$", name):
            info = modinfo(_decompress_module(name, _read_member(tar, member)))
            mod = (info.get("name") or [_module_name(name)])[0]
            index.path[mod] = name
            index.depends[mod] = [d for d in ",".join(info.get("depends", [])).split(",") if d]
            index.pre[mod] = _softdep_pre(info)
            for alias in info.get("alias", []):
                index.aliases.setdefault(alias.replace("-", "_"), []).append(mod)
    if not bzimage:
        raise AssetsUnavailable(f"{deb.name} holds no boot/vmlinuz-*")
    missing = [m for m in REQUIRED_MODULES if m not in index.path and m not in index.builtin]
    if missing:
        raise AssetsUnavailable(f"{deb.name}: kernel has neither module nor built-in {missing}")
    wanted = [*REQUIRED_MODULES, *(m for m in OPTIONAL_MODULES if m in index.path)]
    order = index.load_order(wanted)
    (out / "modules.dep").write_text(index.modules_dep(release))

    # Pass 2: only the modules to load, decompressed (busybox insmod reads plain ELF).
    (out / "modules").mkdir()
    by_path = {index.path[m]: m for m in order}
    files = {}
    for name, tar, member in _deb_members(deb):
        if name in by_path:
            mod = by_path[name]
            files[mod] = f"{order.index(mod):02d}-{mod}.ko"  # numbered in load order
            (out / "modules" / files[mod]).write_bytes(
                _decompress_module(name, _read_member(tar, member)))
            if len(files) == len(by_path):
                break
    (out / "vmlinuz").write_bytes(bzimage)
    try:
        (out / "vmlinux").write_bytes(extract_vmlinux(bzimage))
        image, pvh, why = "vmlinux", True, ""
    except (ValueError, lzma.LZMAError, zlib.error, subprocess.SubprocessError) as exc:
        image, pvh, why = "vmlinuz", False, str(exc)
    timings["kernel_unpack"] = time.monotonic() - t0
    (out / "manifest.json").write_text(json.dumps({
        "package": package, "version": version, "release": release, "image": image, "pvh": pvh,
        "vmlinux_error": why, "modules": [files[m] for m in order],
    }, indent=2))


def ensure_kernel(cache: Path, timings: dict[str, float]) -> Kernel:
    """The current Debian kernel, fetched and unpacked once per version."""
    try:
        package = kernel_package()
        version = candidate_version(package)
    except AssetsUnavailable:
        # Offline or not Debian: a kernel cached earlier still serves.
        cached = sorted((cache / "kernel").glob("*/manifest.json"), key=lambda p: p.stat().st_mtime)
        if cached:
            return _kernel_from_manifest(cached[-1].parent)
        raise
    final = cache / "kernel" / _safe(f"{package}_{version}")
    if not (final / "manifest.json").exists():
        with _building(final) as out, tempfile.TemporaryDirectory(dir=cache) as work:
            _build_kernel(package, version, out, Path(work), timings)
    return _kernel_from_manifest(final)


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


def _link_or_copy(src: Path, dest: Path) -> None:
    """Hardlink ``src`` to ``dest`` (mtime kept, so .pyc stay valid); copy across devices."""
    try:
        os.link(src, dest)
    except OSError:
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


# ----------------------------------------------------------------------------- initramfs

STAGE0 = r"""#!/bin/sh
# Stage 0 of the roost VM harness: load the block and filesystem modules, set up the root the
# host chose on the kernel command line, switch_root into it and exec the chosen init.
# Any failure prints a ROOST-VM verdict and powers the machine off: stage 0 never hangs.
PATH=/bin
export PATH
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

say() { echo "ROOST-VM $*" > /dev/console; }
fail() {
    say stage0-error "$*"
    echo "stage 0: $*: powering off" > /dev/console
    poweroff -f
    echo o > /proc/sysrq-trigger
    sleep 30
}
say stage0 start

layout=disk
init=/sbin/init
rootflags=rw
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        roost.layout=*) layout="${arg#*=}" ;;
        roost.init=*) init="${arg#*=}" ;;
        roost.rootflags=*) rootflags="${arg#*=}" ;;
    esac
done

@INSMOD@

i=0
while [ ! -b /dev/vda ]; do
    i=$((i + 1))
    [ "$i" -gt 100 ] && fail "no /dev/vda after 10 s"
    sleep 0.1
done

case "$layout" in
    disk)
        mount -t ext4 -o "$rootflags" /dev/vda /newroot || fail "mount /dev/vda on /newroot"
        ;;
    loop)
        mount -t ext4 -o rw /dev/vda /outer || fail "mount outer /dev/vda on /outer"
        [ -f /outer/@ROOTIMG@ ] || fail "no /@ROOTIMG@ on the outer filesystem"
        losetup /dev/loop0 /outer/@ROOTIMG@ || fail "losetup /dev/loop0 /outer/@ROOTIMG@"
        mount -t ext4 -o "$rootflags" /dev/loop0 /newroot || fail "mount /dev/loop0 on /newroot"
        [ -d /newroot/outer ] || fail "no /outer mount point in the root image"
        mount -o move /outer /newroot/outer || fail "move /outer into the new root"
        ;;
    *)
        fail "unknown roost.layout=$layout"
        ;;
esac

[ -e "/newroot$init" ] || [ -L "/newroot$init" ] || fail "no init $init in the root image"
# The new init inherits a populated devtmpfs (as from any initramfs); /proc and /sys are its own.
if [ -d /newroot/dev ]; then
    mount -o move /dev /newroot/dev || fail "move /dev into the new root"
fi
umount /sys
umount /proc
say stage0 switch-root "$layout" "$init"
exec switch_root /newroot "$init"
"""


def _cpio(entries: Iterable[tuple[str, int, bytes, int]]) -> bytes:
    """A newc cpio archive of (path, mode, data, rdev) entries, written without root."""
    out = bytearray()
    ino = 1
    for name, mode, data, rdev in [*entries, ("TRAILER!!!", 0, b"", 0)]:
        encoded = name.encode() + b"\0"
        fields = (ino, mode, 0, 0, 2 if mode & 0o040000 else 1, 0, len(data), 0, 0,
                  os.major(rdev), os.minor(rdev), len(encoded), 0)
        out += b"070701" + b"".join(b"%08X" % f for f in fields) + encoded
        out += b"\0" * (-len(out) % 4) + data
        out += b"\0" * (-len(out) % 4)
        ino += 1
    return bytes(out)


def ensure_initramfs(cache: Path, kernel: Kernel, busybox: Path,
                     timings: dict[str, float]) -> Path:
    """The stage-0 initramfs (busybox, modules, /init) for this kernel, built once."""
    insmod = "\n".join(
        f'insmod /lib/modules/{m.name} || fail "insmod {m.name}"' for m in kernel.modules)
    script = STAGE0.replace("@INSMOD@", insmod).replace("@ROOTIMG@", ROOT_IN_OUTER)
    digest = hashlib.sha256()
    for part in (script.encode(), busybox.read_bytes(), *(m.read_bytes() for m in kernel.modules)):
        digest.update(hashlib.sha256(part).digest())
    final = cache / "initramfs" / f"{digest.hexdigest()[:16]}.cpio"
    if final.exists():
        return final
    t0 = time.monotonic()
    dirs = ["bin", "dev", "proc", "sys", "newroot", "outer", "run", "tmp", "lib", "lib/modules"]
    entries = [(d, 0o040755, b"", 0) for d in dirs]
    entries += [
        ("dev/console", 0o020600, b"", os.makedev(5, 1)),
        ("dev/null", 0o020666, b"", os.makedev(1, 3)),
        ("bin/busybox", 0o100755, busybox.read_bytes(), 0),
        ("bin/sh", 0o120777, b"busybox", 0),
        ("init", 0o100755, script.encode(), 0),
    ]
    entries += [(f"lib/modules/{m.name}", 0o100644, m.read_bytes(), 0) for m in kernel.modules]
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.{os.getpid()}")
    tmp.write_bytes(_cpio(entries))
    os.rename(tmp, final)
    timings["initramfs"] = time.monotonic() - t0
    return final


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
    return Assets(cache=cache, kernel=kernel, busybox=busybox, python_tree=python_tree,
                  initramfs=initramfs, timings=timings)


# ----------------------------------------------------------------------------- root images


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
               hostname: str = "roost-vm", keep_tree: bool = False) -> RootImage:
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
    if not keep_tree:
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


# ----------------------------------------------------------------------------- boot


@dataclasses.dataclass(frozen=True)
class ConsoleLine:
    """One console line and when it reached the host (seconds since qemu started)."""

    t: float
    text: str


@dataclasses.dataclass(frozen=True)
class Verdict:
    """A ``ROOST-VM <key> <value...>`` line printed by the guest."""

    t: float
    key: str
    value: str


_VERDICT_RE = re.compile(re.escape(VERDICT_PREFIX) + r" (\S+)(?:[ \t]+(.*?))?\s*$")
_SHUTDOWN_LINES = (
    ("reboot: Power down", "poweroff"),
    ("reboot: Restarting system", "reboot"),
    ("reboot: System halted", "halt"),
    ("Kernel panic - not syncing", "panic"),
)


def parse_verdicts(lines: Iterable[ConsoleLine]) -> list[Verdict]:
    """The verdict lines among console lines, in order."""
    verdicts = []
    for line in lines:
        match = _VERDICT_RE.search(line.text)
        if match:
            verdicts.append(Verdict(line.t, match.group(1), match.group(2) or ""))
    return verdicts


@dataclasses.dataclass
class BootResult:
    """What one qemu run produced.  Times are seconds since qemu was started."""

    command: list[str]
    returncode: int | None
    lines: list[ConsoleLine]
    verdicts: list[Verdict]
    shutdowns: list[str]          # poweroff / reboot / halt / panic, in order
    boots: int                    # stage-0 starts seen
    exited_at: float              # when qemu was gone (or killed)
    deadline_hit: bool
    killed_reason: str | None
    log: Path
    qemu_stderr: str

    @property
    def console(self) -> str:
        """The whole console text."""
        return "\n".join(line.text for line in self.lines)

    @property
    def shutdown(self) -> str | None:
        """How the last boot ended, as the kernel reported it, or None."""
        return self.shutdowns[-1] if self.shutdowns else None

    def values(self, key: str) -> list[str]:
        """Every value printed for ``key``."""
        return [v.value for v in self.verdicts if v.key == key]

    def value(self, key: str, default: str | None = None) -> str | None:
        """The last value printed for ``key``, or ``default``."""
        values = self.values(key)
        return values[-1] if values else default

    def line_time(self, marker: str) -> float:
        """When the first console line containing ``marker`` arrived."""
        for line in self.lines:
            if marker in line.text:
                return line.t
        raise KeyError(f"no console line contains {marker!r}")

    def time_to(self, marker: str) -> float:
        """Seconds from qemu (and kernel) start to the first line containing ``marker``."""
        return self.line_time(marker)

    def time_from(self, marker: str) -> float:
        """Seconds from the first line containing ``marker`` to qemu's exit."""
        return self.exited_at - self.line_time(marker)

    def describe(self, tail: int = 60) -> str:
        """A summary for failure messages: status, ending, verdicts, the console's tail."""
        shown = self.lines[-tail:]
        return (
            f"qemu: exit {self.returncode}, ended by {self.shutdown}, boots {self.boots}, "
            f"{self.exited_at:.1f}s, deadline hit: {self.deadline_hit}, "
            f"killed: {self.killed_reason}\n"
            f"verdicts: {[(v.key, v.value) for v in self.verdicts]}\n"
            f"full console: {self.log}\n"
            f"--- console (last {len(shown)} lines) ---\n"
            + "\n".join(f"[{line.t:7.3f}] {line.text}" for line in shown)
            + (f"\n--- qemu stderr ---\n{self.qemu_stderr}" if self.qemu_stderr.strip() else "")
        )


def qemu_command(assets: Assets, image: RootImage, *, init: str, append: Sequence[str] = (),
                 allow_reboot: bool = False, memory_mb: int = 512, quiet: bool = False,
                 rootflags: str = "rw", extra_args: Sequence[str] = ()) -> list[str]:
    """The qemu command line for one boot of ``image`` with ``init`` as PID 1."""
    cmdline = ["console=ttyS0", "panic=-1", *(["quiet"] if quiet else []),
               f"roost.layout={image.layout}", f"roost.init={init}",
               f"roost.rootflags={rootflags}", *append]
    for arg in cmdline:
        if not arg or any(c.isspace() for c in arg):
            raise ValueError(f"kernel command line argument {arg!r} is empty or has spaces")
    cmd = [
        QEMU, "-accel", "tcg", "-cpu", "max", "-smp", "1", "-m", str(memory_mb),
        "-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio",
        "-kernel", os.fspath(assets.kernel.image), "-initrd", os.fspath(assets.initramfs),
        "-append", " ".join(cmdline),
        "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
    ]
    for drive in image.qemu_drives:
        cmd += ["-drive", f"file={drive},format=raw,if=virtio"]
    if not allow_reboot:
        cmd.append("-no-reboot")
    return cmd + list(extra_args)


def _die_with_parent() -> None:
    """In the qemu child before exec: SIGKILL it if the test process dies first."""
    ctypes.CDLL(None, use_errno=True).prctl(1, 9, 0, 0, 0)  # PR_SET_PDEATHSIG, SIGKILL


def boot(assets: Assets, image: RootImage, *, init: str = ROOST_INIT,
         append: Sequence[str] = (), allow_reboot: bool = False, max_boots: int | None = None,
         deadline: float | None = None, memory_mb: int = 512, quiet: bool = False,
         rootflags: str = "rw", on_line: Callable[[ConsoleLine], None] | None = None,
         name: str = "boot", extra_qemu_args: Sequence[str] = ()) -> BootResult:
    """Boot ``image`` with ``init`` as PID 1 and wait for qemu to exit.

    Raises BootError (console attached) when ``deadline`` seconds pass or the guest boots more
    than ``max_boots`` times.  A halted machine is stopped and reported as ``shutdown == "halt"``.
    The kernel logs at full verbosity by default (``quiet=True`` saves ~0.1 s): failure
    messages then show what the kernel said.
    """
    max_boots = max_boots or (2 if allow_reboot else 1)
    deadline = deadline or 60.0 * max_boots
    cmd = qemu_command(assets, image, init=init, append=append, allow_reboot=allow_reboot,
                       memory_mb=memory_mb, quiet=quiet, rootflags=rootflags,
                       extra_args=extra_qemu_args)
    log = image.workdir / f"{name}.console.log"
    errlog = image.workdir / f"{name}.qemu-stderr.log"
    lines: list[ConsoleLine] = []
    shutdowns: list[str] = []
    boots = 0
    killed: str | None = None
    deadline_hit = False
    panic_at: float | None = None
    with open(log, "w") as log_file, open(errlog, "w+") as err_file:
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=err_file, preexec_fn=_die_with_parent)
        assert proc.stdout is not None
        os.set_blocking(proc.stdout.fileno(), False)
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        pending = b""
        try:
            eof = False
            while not eof:
                now = time.monotonic() - t0
                if now > deadline:
                    deadline_hit, killed = True, f"deadline of {deadline:.0f}s passed"
                    break
                if panic_at is not None and now > panic_at + 3:
                    killed = "kernel panic"
                    break
                for _key, _ev in sel.select(timeout=min(0.5, max(0.0, deadline - now))):
                    chunk = os.read(proc.stdout.fileno(), 65536)
                    if not chunk:
                        eof = True
                        break
                    pending += chunk
                    *complete, pending = pending.split(b"\n")
                    t = time.monotonic() - t0
                    for raw in complete:
                        line = ConsoleLine(t, raw.decode(errors="replace").rstrip("\r"))
                        lines.append(line)
                        log_file.write(f"[{t:8.3f}] {line.text}\n")
                        if on_line is not None:
                            on_line(line)
                        if BOOT_MARKER in line.text:
                            boots += 1
                        for text, kind in _SHUTDOWN_LINES:
                            if text in line.text:
                                shutdowns.append(kind)
                                if kind == "panic" and panic_at is None:
                                    panic_at = t
                    log_file.flush()
                if killed is None and boots > max_boots:
                    killed = f"guest booted more than {max_boots} times"
                    break
                if killed is None and shutdowns[-1:] == ["halt"]:
                    killed = "machine halted"
                    break
                if eof or proc.poll() is not None:
                    # Drain what is left, then stop.
                    with contextlib.suppress(BlockingIOError):
                        rest = os.read(proc.stdout.fileno(), 1 << 20)
                        if rest:
                            pending += rest
                            continue
                    eof = True
        finally:
            if killed is None:
                # The console closes a moment before qemu's exit status is ready.
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=max(1.0, min(10.0, deadline - (time.monotonic() - t0))))
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
            sel.close()
            proc.stdout.close()
        exited_at = time.monotonic() - t0
        if pending:
            lines.append(ConsoleLine(exited_at, pending.decode(errors="replace").rstrip("\r")))
            log_file.write(f"[{exited_at:8.3f}] {lines[-1].text}\n")
        err_file.seek(0)
        stderr = err_file.read()
    result = BootResult(
        command=cmd, returncode=None if killed else proc.returncode, lines=lines,
        verdicts=parse_verdicts(lines), shutdowns=shutdowns, boots=boots, exited_at=exited_at,
        deadline_hit=deadline_hit, killed_reason=killed, log=log, qemu_stderr=stderr,
    )
    if deadline_hit or (killed and killed.startswith("guest booted")):
        raise BootError(f"qemu stopped: {killed}", result)
    return result


# ----------------------------------------------------------------------------- after the VM


@dataclasses.dataclass(frozen=True)
class FsCheck:
    """What ``dumpe2fs -h`` and ``e2fsck -fn`` say about one ext4 image."""

    name: str
    image: Path
    state: str
    features: tuple[str, ...]
    e2fsck_rc: int
    e2fsck_output: str
    dumpe2fs_output: str

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
        dumpe2fs_output=text,
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


class VM:
    """One scenario's workbench: build images under ``workdir``, boot them, inspect them.

    Every boot and build is recorded in ``records`` (name, seconds) for reports.
    """

    def __init__(self, assets: Assets, workdir: Path) -> None:
        self.assets = assets
        self.workdir = workdir
        self.records: list[tuple[str, float]] = []
        self._count = 0

    def build(self, layout: str = "disk", extra_files: Mapping[str, ExtraFile] | None = None,
              **kwargs: Any) -> RootImage:
        """:func:`build_root` in a fresh subdirectory of the workbench."""
        self._count += 1
        image = build_root(self.workdir / f"{self._count:02d}-{layout}", self.assets,
                           layout=layout, extra_files=extra_files, **kwargs)
        self.records.append((f"build {layout}", image.timings["total"]))
        return image

    def boot(self, image: RootImage, **kwargs: Any) -> BootResult:
        """:func:`boot` with this workbench's assets (same keyword arguments)."""
        try:
            result = boot(self.assets, image, **kwargs)
        except BootError as exc:
            self.records.append(("boot (failed)", exc.result.exited_at))
            raise
        self.records.append(("boot", result.exited_at))
        return result

    def check_clean(self, image: RootImage) -> CleanReport:
        """:func:`check_clean`."""
        return check_clean(image)

    def read_file(self, image: RootImage, guest_path: str) -> bytes:
        """:func:`read_file`."""
        return read_file(image, guest_path)


# ----------------------------------------------------------------------------- command line


def _main(argv: Sequence[str] | None = None) -> int:
    """Manual front end: fetch assets, or build an image and boot it with the console shown."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.vm.harness",
        description="Boot roost (or the placeholder PID 1) on a real kernel under qemu.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("assets", help="fetch and build the cached assets, print paths and timings")
    b = sub.add_parser("boot", help="build a root image and boot it, console on stdout")
    b.add_argument("--layout", choices=("disk", "loop"), default="disk")
    b.add_argument("--init", default=ROOST_INIT,
                   help=f"PID 1 inside the guest (placeholder: {PLACEHOLDER_INIT})")
    b.add_argument("--append", action="append", default=[], metavar="ARG",
                   help="extra kernel command-line argument (repeatable)")
    b.add_argument("--file", action="append", default=[], metavar="GUEST=HOST",
                   help="copy HOST into the image at GUEST (mode kept; repeatable)")
    b.add_argument("--allow-reboot", action="store_true")
    b.add_argument("--max-boots", type=int)
    b.add_argument("--deadline", type=float)
    b.add_argument("--quiet-kernel", action="store_true", help="add `quiet` to the command line")
    b.add_argument("--workdir", type=Path, help="keep images here (default: a temp dir)")
    args = parser.parse_args(argv)

    reason = missing_tools()
    if reason:
        print(reason, file=sys.stderr)
        return 2
    assets = ensure_assets()
    if args.command == "assets":
        k = assets.kernel
        print(f"kernel   {k.package} {k.version} ({k.release}) "
              f"{'PVH vmlinux' if k.pvh else 'bzImage'}: {k.image}")
        print(f"modules  {' '.join(m.name for m in k.modules)}")
        print(f"busybox  {assets.busybox}")
        print(f"python   {assets.python_tree}")
        print(f"initrd   {assets.initramfs}")
        print("timings  " + " ".join(f"{k}={v:.2f}s" for k, v in assets.timings.items()))
        return 0
    extra: dict[str, ExtraFile] = {}
    for spec in args.file:
        guest, _, host = spec.partition("=")
        extra[guest] = (Path(host).read_bytes(), Path(host).stat().st_mode & 0o7777)
    with contextlib.ExitStack() as stack:
        workdir = args.workdir or Path(stack.enter_context(
            tempfile.TemporaryDirectory(prefix="roost-vm-")))
        image = build_root(workdir, assets, layout=args.layout, extra_files=extra)
        print("image    " + " ".join(f"{k}={v:.2f}s" for k, v in image.timings.items()),
              file=sys.stderr)
        try:
            result = boot(assets, image, init=args.init, append=args.append,
                          allow_reboot=args.allow_reboot, max_boots=args.max_boots,
                          deadline=args.deadline, quiet=args.quiet_kernel,
                          on_line=lambda line: print(f"[{line.t:7.3f}] {line.text}", flush=True))
        except BootError as exc:
            print(exc, file=sys.stderr)
            return 1
        report = check_clean(image)
        print(f"qemu exit {result.returncode}, ended by {result.shutdown}, "
              f"{result.exited_at:.2f}s", file=sys.stderr)
        print(report.describe(), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(_main())
