"""Real daemons from Debian packages for the tests, unpacked, never installed.

`apt-get install nginx` on the machine that runs the tests would enable nginx.service
in its systemd (the package's postinst does, whatever policy-rc.d says), and it would
listen on port 80 from the next boot on. So the daemons the tests run are fetched with
`apt-get download` and unpacked with `dpkg-deb -x` into `.cache/debs/root`: no
maintainer script runs, dpkg's database is untouched, and deleting the directory
undoes everything. A dependency the host lacks is unpacked beside it.

    python -m tests.debs [--force]   # fetch what the host does not already provide

`program(name)` and `library(name)` find a program or a preloaded library there (else
on the host), and `environment(path)` gives the library path an unpacked program needs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ROOT = REPO / ".cache" / "debs" / "root"
_ARCHIVES = REPO / ".cache" / "debs" / "archives"

# The program each test needs, and the Debian package that ships it.
PROGRAMS = {
    "nginx": "nginx",                    # a master that forks away, with workers
    "dnsmasq": "dnsmasq-base",           # a double fork, then a pid file
    "systemd-notify": "systemd",         # the real sd_notify sender
    "podman": "podman",                  # a real container runtime; enables 4 units if installed
    "rsvg-convert": "librsvg2-bin",      # renders `roost analyze`'s SVG, as a viewer would
    # Daemons started from their own unit files, and the clients a user would use.
    "redis-server": "redis-server",      # Type=notify, RuntimeDirectory, LimitNOFILE
    "redis-cli": "redis-tools",
    "sshd": "openssh-server",            # ExecStartPre, ExecReload, KillMode=process
    "ssh": "openssh-client",
    "memcached": "memcached",            # a wrapper script that execs the daemon
    "haproxy": "haproxy",                # -Ws: a master that speaks sd_notify across reloads
    "busybox": "busybox",                # an env without --block-signal, as Alpine has
    "rsyslogd": "rsyslog",               # the syslog daemon roost forwards service output to
}
# The shared libraries tests preload, and their packages.
LIBRARIES = {
    "libfaketime.so.1": "libfaketime",   # moves CLOCK_REALTIME under a running roost
}
_PRELOAD_DIRS = ("usr/lib/x86_64-linux-gnu/faketime",)
_BIN_DIRS = ("usr/sbin", "usr/bin", "sbin", "bin")
_LIB_DIRS = ("usr/lib/x86_64-linux-gnu", "lib/x86_64-linux-gnu",
             "usr/lib/x86_64-linux-gnu/systemd", "usr/lib")


def _on_host(name: str) -> str | None:
    found = shutil.which(name)
    if found is None and os.path.exists(f"/usr/sbin/{name}"):
        found = f"/usr/sbin/{name}"
    return found


def program(name: str) -> str | None:
    """The unpacked program if there is one, else the host's, else None."""
    for d in _BIN_DIRS:
        path = ROOT / d / name
        if path.exists():
            return str(path)
    return _on_host(name)


def library(name: str) -> str | None:
    """The unpacked library if there is one, else the host's, else None."""
    for root in (ROOT, Path("/")):
        for d in _PRELOAD_DIRS:
            path = root / d / name
            if path.exists():
                return str(path)
    return None


def environment(path: str) -> dict[str, str]:
    """What an unpacked program needs to find its unpacked libraries ({} for the host's)."""
    if not path.startswith(str(ROOT)):
        return {}
    dirs = [str(ROOT / d) for d in _LIB_DIRS if (ROOT / d).is_dir()]
    return {"LD_LIBRARY_PATH": ":".join(dirs)} if dirs else {}


def _missing_dependencies(package: str) -> list[str]:
    """`package` and what apt would install with it here (alternatives resolved as apt would)."""
    argv = ["apt-get", "-s", "-q", "install", "--no-install-recommends", package]
    ran = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)
    if ran.returncode != 0:  # a fresh machine has no package lists yet
        subprocess.run(["apt-get", "update", "-qq"], check=True, timeout=600)
        ran = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=120)
    names = {line.split()[1] for line in ran.stdout.splitlines() if line.startswith("Inst ")}
    return sorted(names | {package})


def fetch(force: bool = False) -> list[str]:
    """Download and unpack what the host lacks (everything with `force`); return the packages."""
    wanted = sorted({pkg for name, pkg in PROGRAMS.items() if force or program(name) is None}
                    | {pkg for name, pkg in LIBRARIES.items() if force or library(name) is None})
    if not wanted:
        return []
    packages = sorted({dep for pkg in wanted for dep in _missing_dependencies(pkg)})
    _ARCHIVES.mkdir(parents=True, exist_ok=True)
    ROOT.mkdir(parents=True, exist_ok=True)
    subprocess.run(["apt-get", "download", "-q", *packages], cwd=_ARCHIVES, check=True,
                   timeout=600, stdout=subprocess.DEVNULL)
    for deb in sorted(_ARCHIVES.glob("*.deb")):
        subprocess.run(["dpkg-deb", "-x", str(deb), str(ROOT)], check=True, timeout=120)
    return packages


def archives(packages: list[str]) -> list[Path]:
    """The downloaded .deb of each package and of what it needs that the host lacks."""
    names = sorted({dep for pkg in packages for dep in _missing_dependencies(pkg)})
    found = []
    for name in names:
        debs = sorted(_ARCHIVES.glob(f"{name}_*.deb"))
        if not debs:
            raise FileNotFoundError(f"{name}: not downloaded; run `python -m tests.debs`")
        found.append(debs[-1])
    return found


def unit_files(packages: list[str]) -> list[Path]:
    """The .service units the packages ship, unpacked (never installed) under .cache/debs/units."""
    units = REPO / ".cache" / "debs" / "units"
    missing = [p for p in packages if not (units / p).is_dir()]
    if missing:
        archives = REPO / ".cache" / "debs" / "unit-archives"
        archives.mkdir(parents=True, exist_ok=True)
        subprocess.run(["apt-get", "download", "-q", *missing], cwd=archives, check=True,
                       timeout=900, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for package in missing:
            (units / package).mkdir(parents=True, exist_ok=True)
            for deb in archives.glob(f"{package}_*.deb"):
                subprocess.run(["dpkg-deb", "-x", str(deb), str(units / package)], check=True,
                               timeout=120)
    found = []
    for package in packages:
        for d in ("lib/systemd/system", "usr/lib/systemd/system"):
            found += sorted((units / package / d).glob("*.service"))
    return found


def main(argv: list[str]) -> int:
    """Fetch the test daemons; say what was unpacked."""
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        print("tests.debs: no apt-get/dpkg-deb here; the daemon tests will skip, saying so")
        return 0
    packages = fetch(force="--force" in argv)
    where = ROOT.relative_to(REPO)
    print(f"tests.debs: unpacked {' '.join(packages)} into {where}" if packages
          else "tests.debs: the host provides every daemon the tests run")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
