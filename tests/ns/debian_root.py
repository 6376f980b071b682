"""Debian packages as if installed, for roost to run from their own unit files.

A unit file names its programs and files at their installed paths (/usr/bin/redis-server,
/etc/redis/redis.conf). The tests give them those paths without installing anything:
roost runs chrooted into the host's own `/` seen through an overlay, with the packages
(downloaded by tests/debs.py) unpacked into a layer above it and a tmpfs on top for every
write. The
overlay lives in the mount namespace of roost's own PID namespace, with a network
namespace of its own (daemons listen on its 127.0.0.1, never the host's), and vanishes
with it.

What a package's maintainer scripts would do on installation (its system user, its
directories, its generated configuration, its host keys) is done by a setup script the
test gives, in the chroot, before roost starts: the same commands the postinst runs.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from tests import debs

# PID 1 of the new namespaces until it execs roost: $1 the work directory, $2 the setup
# script, then roost's command line.
_BOOT = r"""
set -eu
base=$1 setup=$2
shift 2
mount -t tmpfs -o mode=0755 roost-layer "$base/layer"
mkdir "$base/layer/upper" "$base/layer/work" "$base/layer/packages"
# The packages' layer is a filesystem of its own: overlayfs refuses a layer beneath another.
for deb in $ROOST_DEBS; do dpkg-deb -x "$deb" "$base/layer/packages"; done
# The host's /bin, /sbin and /lib are links into /usr (merged /usr): a package's own
# directory of that name would hide them, so its files go where the links point.
for d in bin sbin lib lib64; do
    pkg=$base/layer/packages
    if [ -d "$pkg/$d" ] && [ -L "/$d" ]; then
        mkdir -p "$pkg/usr/$d" && cp -a "$pkg/$d/." "$pkg/usr/$d/" && rm -rf "${pkg:?}/$d"
    fi
done
layers="lowerdir=$base/layer/packages:/,upperdir=$base/layer/upper,workdir=$base/layer/work"
mount -t overlay roost-debian -o "$layers" "$base/root"
root=$base/root
mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
mount --rbind /sys "$root/sys"
mount -t tmpfs -o mode=0755 roost-run "$root/run"
# The one directory shared with the test outside: the control socket, what clients need.
mount --bind "$base/shared" "$root$base/shared"
ip link set lo up
chroot "$root" /bin/sh -eu -c "$setup"
exec chroot "$root" "$@"
"""


class DebianRoot:
    """One chrooted roost's work directory: `wrap` makes its command line; `shared` is seen
    inside and out."""

    def __init__(self, packages: list[str], setup: str) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="roost-debian-", dir="/tmp"))
        self.base.chmod(0o755)
        for sub in ("layer", "root", "shared"):
            (self.base / sub).mkdir()
        self.shared = self.base / "shared"
        self.setup = setup
        self.debs = " ".join(str(p) for p in debs.archives(packages))

    @property
    def control(self) -> str:
        """roost's control socket, at the same path inside the chroot and outside."""
        return str(self.shared / "control")

    def wrap(self, argv: list[str]) -> list[str]:
        """The command line that mounts the overlay, sets the packages up, execs `argv` chrooted."""
        return ["env", f"ROOST_DEBS={self.debs}", "/bin/sh", "-c", _BOOT, "sh", str(self.base),
                self.setup, *argv]

    def client(self, init_pid: int, program: str, *args: str,
               timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """Run an unpacked client `program` in roost's network namespace (its 127.0.0.1)."""
        path = debs.program(program)
        if path is None:
            raise AssertionError(f"{program} is missing: run `python -m tests.debs`")
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(self.shared),
               **debs.environment(path)}
        return subprocess.run(["nsenter", "-t", str(init_pid), "-n", "--", path, *args],
                              capture_output=True, text=True, timeout=timeout, env=env,
                              stdin=subprocess.DEVNULL, check=False)

    def close(self) -> None:
        """Remove the work directory (the mounts went with roost's namespaces)."""
        subprocess.run(["rm", "-rf", "--one-file-system", str(self.base)], check=False,
                       timeout=60)


def unit(package: str, name: str) -> str:
    """The text of a unit file as `package` ships it, unmodified."""
    (path,) = [p for p in debs.unit_files([package]) if p.name == name] or [None]
    if path is None:
        raise AssertionError(f"{package} ships no {name}")
    return Path(path).read_text()

