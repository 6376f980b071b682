"""The Debian kernel: its PVH vmlinux, the modules a virtio ext4 root needs, in load order."""

from __future__ import annotations

import dataclasses
import json
import lzma
import re
import shutil
import struct
import subprocess
import tempfile
import time
import zlib
from collections.abc import Iterable, Mapping
from pathlib import Path

from .debian import _deb_members, _download, _read_member, candidate_version, kernel_package
from .tools import AssetsUnavailable, _building, _safe

# Modules a virtio ext4 root needs; their dependencies come from each module's .modinfo.
# loop is wanted only when it is modular (it backs layout "loop").
REQUIRED_MODULES = ("virtio_pci", "virtio_blk", "ext4")
OPTIONAL_MODULES = ("loop",)


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


@dataclasses.dataclass(frozen=True)
class Kernel:
    """A cached Debian kernel: boot image, module files in load order, provenance."""

    package: str
    version: str
    release: str
    image: Path          # vmlinux (PVH ELF) when extraction worked, else the bzImage
    pvh: bool
    modules: tuple[Path, ...]


def _kernel_from_manifest(path: Path) -> Kernel:
    """Load a cached kernel's manifest.json."""
    meta = json.loads((path / "manifest.json").read_text())
    return Kernel(
        package=meta["package"], version=meta["version"], release=meta["release"],
        image=path / meta["image"], pvh=meta["pvh"],
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
