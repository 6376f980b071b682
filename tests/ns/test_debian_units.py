"""Real Debian daemons started by roost from their own, unmodified unit files.

Each unit file is copied as its package ships it into roost's configuration directory,
and roost runs chrooted into the host's `/` with the packages unpacked over it
(tests/ns/debian_root.py), as PID 1 of PID, mount and network namespaces of its own. For
each daemon: it comes up (a notify daemon only at its own READY=1), a real client gets a
real answer on 127.0.0.1, it is restarted when killed as its `Restart=` says, and a stop
leaves nothing of it running.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from roost.kernel import proc
from tests import debs
from tests.ns.debian_root import DebianRoot, unit
from tests.ns.supervisor_kit import ConfigDir, Roost
from tests.support import PYTHON, wait_for

pytestmark = [pytest.mark.timeout(180), pytest.mark.usefixtures("unshare_required")]


@pytest.fixture
def chroot_roost(tmp_path: Path) -> Iterator[object]:
    """A factory: roost up, chrooted, on the given unit files, after a setup script."""
    made: list[tuple[Roost, DebianRoot]] = []

    def start(units: dict[str, str], packages: list[str],
              setup: str) -> tuple[Roost, DebianRoot]:
        for program in ("redis-server", "sshd", "memcached"):
            if debs.program(program) is None:
                pytest.fail(f"{program} is missing: run `python -m tests.debs`")
        root = DebianRoot(packages, setup)
        config = ConfigDir(tmp_path / "units")
        for name, text in units.items():
            (config.path / name).parent.mkdir(parents=True, exist_ok=True)
            (config.path / name).write_text(text)
        roost = Roost(config, "pid1", tmp_path, chroot=root)
        made.append((roost, root))
        roost.wait_ready(timeout=60)
        return roost, root

    yield start
    for roost, root in made:
        roost.close()
        root.close()


def proc_field(roost: Roost, pid: int, field: str) -> str:
    """A line of /proc/PID/status of a process roost reports (its own pid)."""
    host = roost.host_pid(pid)
    for line in Path(f"/proc/{host}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no {field} in /proc/{host}/status")


def account(roost: Roost, pid: int, name: str) -> int:
    """The uid of `name` in the chroot's passwd, as the process sees it."""
    host = roost.host_pid(pid)
    for line in Path(f"/proc/{host}/root/etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == name:
            return int(fields[2])
    raise AssertionError(f"no user {name} in the chroot")


def restarted(roost: Roost, name: str, old: int) -> dict[str, object]:
    """Wait until `name` is up again with a new main pid."""
    found = wait_for(lambda: (r := roost.status(name))["state"] == "up" and r["pid"] != old
                     and r, timeout=60, what=f"{name} up again with a new pid")
    assert isinstance(found, dict)
    return found


def stopped_clean(roost: Roost, name: str) -> None:
    """Stop `name` and check that none of its processes is left."""
    roost.call("stop", services=[name], wait=True, timeout=60)
    assert roost.status(name)["state"] == "down"
    assert roost.call("tree", services=[name])["services"][0]["processes"] == []


def python_in(roost: Roost, code: str) -> str:
    """Run Python `code` in roost's network namespace; its stdout."""
    assert roost.ns is not None
    ran = subprocess.run(["nsenter", "-t", str(roost.ns.init_pid), "-n", "--", PYTHON, "-c",
                          code], capture_output=True, text=True, timeout=30, check=False)
    assert ran.returncode == 0, ran.stderr
    return ran.stdout


# What each package's postinst does on installation, as its own commands.
REDIS_SETUP = """
adduser --system --home /var/lib/redis --quiet --group redis
install -d -o redis -g adm -m 2750 /var/log/redis
install -d -o redis -g redis -m 750 /var/lib/redis
chown redis:redis /etc/redis && chmod 2770 /etc/redis
"""


# Without CAP_SYS_RESOURCE (these machines), no init could grant LimitNOFILE=65535 above
# its own hard limit: a drop-in, as an administrator would write, lowers it.
NOFILE = 65535 if proc.has_capability(24) else 16384


def test_redis_from_its_unit(chroot_roost: object) -> None:
    units = {"redis-server.service": unit("redis-server", "redis-server.service")}
    if NOFILE != 65535:
        units["redis-server.service.d/limits.conf"] = f"[Service]\nLimitNOFILE={NOFILE}\n"
    roost, root = chroot_roost(units, ["redis-server"], REDIS_SETUP)  # type: ignore[operator]
    assert roost.ns is not None
    # Type=notify: up only at its own READY=1, with its STATUS= shown.
    record = roost.wait_state("redis-server", "up", timeout=60)
    assert record["status"], "redis says what it is doing with STATUS="
    pid = int(record["pid"])
    ping = root.client(roost.ns.init_pid, "redis-cli", "-h", "127.0.0.1", "ping")
    assert ping.stdout.strip() == "PONG", ping
    assert root.client(roost.ns.init_pid, "redis-cli", "-h", "127.0.0.1", "set", "k",
                       "roost").stdout.strip() == "OK"
    # User=, LimitNOFILE=, RuntimeDirectory= with its mode, NoNewPrivileges=.
    uid = account(roost, pid, "redis")
    assert proc_field(roost, pid, "Uid").split()[0] == str(uid)
    limits = Path(f"/proc/{roost.host_pid(pid)}/limits").read_text()
    nofile = next(line for line in limits.splitlines() if line.startswith("Max open files"))
    assert nofile.split()[3:5] == [str(NOFILE), str(NOFILE)]
    run = Path(f"/proc/{roost.host_pid(pid)}/root/run/redis")
    assert run.stat().st_uid == uid and oct(run.stat().st_mode & 0o7777) == "0o2755"
    assert proc_field(roost, pid, "NoNewPrivs") == "1"
    # Restart=always: killed, it comes back.
    roost.call("signal", services=["redis-server"], signal="KILL")
    pid = int(restarted(roost, "redis-server", pid)["pid"])
    assert root.client(roost.ns.init_pid, "redis-cli", "-h", "127.0.0.1",
                       "ping").stdout.strip() == "PONG"
    stopped_clean(roost, "redis-server")
    assert not run.exists(), "RuntimeDirectory= is removed when the service stops"


MEMCACHED_SETUP = """
addgroup --system memcache
adduser --system --disabled-login --ingroup memcache --home /nonexistent --no-create-home \
    --gecos Memcached --shell /bin/false memcache
cp /usr/share/memcached/memcached.conf.default /etc/memcached.conf
install -d -o memcache -g memcache -m 0755 /run/memcached
"""
MEMCACHED_CLIENT = """
import socket
s = socket.create_connection(("127.0.0.1", 11211), timeout=10)
s.sendall(b"set roost 0 0 5\\r\\nhello\\r\\nget roost\\r\\n")
data = b""
while not data.endswith(b"END\\r\\n"):
    data += s.recv(4096)
print(data.decode().replace("\\r\\n", "|"))
"""


def test_memcached_from_its_unit(chroot_roost: object) -> None:
    roost, _ = chroot_roost({"memcached.service":  # type: ignore[operator]
                             unit("memcached", "memcached.service")},
                             ["memcached"], MEMCACHED_SETUP)
    record = roost.wait_state("memcached", "up", timeout=60)
    pid = int(record["pid"])
    got = wait_for(lambda: "VALUE" in (out := python_in(roost, MEMCACHED_CLIENT)) and out,
                   timeout=20, what="memcached to answer")
    assert got == "STORED|VALUE roost 0 5|hello|END|\n"
    roost.call("signal", services=["memcached"], signal="KILL")  # Restart=always
    restarted(roost, "memcached", pid)
    assert "VALUE" in python_in(roost, MEMCACHED_CLIENT)
    stopped_clean(roost, "memcached")
