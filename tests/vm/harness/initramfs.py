"""The stage-0 initramfs: busybox, the kernel's modules and /init, as a newc cpio."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterable
from pathlib import Path

from .kernel import Kernel
from .paths import ROOT_IN_OUTER

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
