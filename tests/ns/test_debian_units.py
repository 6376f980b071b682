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


# openssh-server's postinst, as its own commands; /run/sshd is not made here: the unit's
# RuntimeDirectory= must be there before its ExecStartPre=/usr/sbin/sshd -t, which needs it.
SSHD_SETUP = """
adduser --quiet --system --no-create-home --home /run/sshd --shell /usr/sbin/nologin sshd
cp /usr/share/openssh/sshd_config /etc/ssh/sshd_config
echo "ListenAddress 127.0.0.1" >> /etc/ssh/sshd_config
ssh-keygen -A
install -d -m 700 /root/.ssh
cp {key}.pub /root/.ssh/authorized_keys
"""


def login(root: DebianRoot, roost: Roost, key: Path) -> str:
    """`ssh root@127.0.0.1` with the test's key, as a user would; what the remote said."""
    assert roost.ns is not None
    done = root.client(roost.ns.init_pid, "ssh", "-i", str(key), "-o", "BatchMode=yes", "-o",
                       "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                       "root@127.0.0.1", "echo logged in as $(id -un)")
    return done.stdout.strip() or done.stderr


def test_sshd_from_its_unit(chroot_roost: object, tmp_path: Path) -> None:
    keygen = debs.program("ssh-keygen")
    assert keygen is not None, "ssh-keygen is missing: run `python -m tests.debs`"
    key = tmp_path / "id_ed25519"
    subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True,
                   timeout=30, env={"PATH": "/usr/bin:/bin", **debs.environment(keygen)})
    roost, root = chroot_roost(  # type: ignore[operator]
        {"ssh.service": unit("openssh-server", "ssh.service")},
        ["openssh-server"], SSHD_SETUP.format(key=key))
    # ExecStartPre=/usr/sbin/sshd -t passed (in /run/sshd, made first), then Type=notify.
    record = roost.wait_state("ssh", "up", timeout=60)
    pid = int(record["pid"])
    assert login(root, roost, key) == "logged in as root"
    host = roost.host_pid(pid)
    run = Path(f"/proc/{host}/root/run/sshd")
    assert run.is_dir() and oct(run.stat().st_mode & 0o7777) == "0o755"
    # ExecReload=: `sshd -t` first, so a broken configuration is refused and sshd lives on.
    config = Path(f"/proc/{host}/root/etc/ssh/sshd_config")
    good = config.read_text()
    config.write_text(good + "NoSuchOption yes\n")
    from roost.control.client import RemoteError

    with pytest.raises(RemoteError, match=r"reload failed: exec_reload 1: exited 255"):
        roost.call("reload", services=["ssh"])
    assert "NoSuchOption" in roost.output(), "sshd -t's complaint is in the service's log"
    assert roost.status("ssh")["pid"] == pid and login(root, roost, key) == "logged in as root"
    # Fixed, the reload goes through: `kill -HUP $MAINPID`, with roost's $MAINPID; sshd
    # re-executes itself in the same process and says READY=1 again.
    config.write_text(good + "Banner none\n")
    (after,) = roost.call("reload", services=["ssh"])
    assert (after["state"], after["pid"], after["reason"]) == ("up", pid, "")
    wait_for(lambda: login(root, roost, key) == "logged in as root", timeout=20,
             what="a login after the reload")
    # KillMode=process: a restart of sshd stops the listener only; a login's session lives
    # on through it, as it does under systemd.
    ssh = debs.program("ssh")
    assert ssh is not None and roost.ns is not None
    session = subprocess.Popen(
        ["nsenter", "-t", str(roost.ns.init_pid), "-n", "--", ssh, "-i", str(key), "-o",
         "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
         "root@127.0.0.1", "echo in; sleep 4; echo survived"], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(root.shared), **debs.environment(ssh)})
    try:
        assert session.stdout is not None and session.stdout.readline().strip() == "in"
        (again,) = roost.call("restart", services=["ssh"], wait=True, timeout=60)
        assert again["state"] == "up" and again["pid"] != pid
        pid = int(again["pid"])
        out, err = session.communicate(timeout=30)
        assert (session.returncode, out.strip()) == (0, "survived"), err
    finally:
        session.kill()
        session.wait(timeout=10)
    # Restart=on-failure: killed, it comes back, through its ExecStartPre= again.
    roost.call("signal", services=["ssh"], signal="KILL")
    pid = int(restarted(roost, "ssh", pid)["pid"])
    assert login(root, roost, key) == "logged in as root"
    stopped_clean(roost, "ssh")
    assert not run.exists(), "RuntimeDirectory= is removed when the service stops"


# nginx-common's postinst, as its own commands (www-data is the host's own account).
NGINX_SETUP = """
install -d -m 0755 -o www-data -g adm /var/log/nginx
install -d -m 0755 /var/lib/nginx /etc/nginx/sites-enabled
ln -sf /etc/nginx/sites-available/default /etc/nginx/sites-enabled/default
install -d -m 0755 /var/www/html
echo '<h1>from nginx</h1>' > /var/www/html/index.html
"""
NGINX_GET = """
import urllib.request, sys
print(urllib.request.urlopen("http://127.0.0.1:" + sys.argv[1] + "/", timeout=10).read().decode())
"""


def nginx_get(roost: Roost, port: int) -> str:
    assert roost.ns is not None
    ran = subprocess.run(["nsenter", "-t", str(roost.ns.init_pid), "-n", "--", PYTHON, "-c",
                          NGINX_GET, str(port)], capture_output=True, text=True, timeout=30,
                         check=False)
    return ran.stdout.strip() or ran.stderr.strip()


def test_nginx_from_its_unit(chroot_roost: object) -> None:
    # Restart= is not in nginx's unit (systemd's default: no); an administrator's drop-in
    # asks for it, so that a killed nginx comes back.
    roost, _ = chroot_roost({  # type: ignore[operator]
        "nginx.service": unit("nginx-common", "nginx.service"),
        "nginx.service.d/restart.conf": "[Service]\nRestart=on-failure\n",
    }, ["nginx", "nginx-common"], NGINX_SETUP)
    # ExecStartPre=nginx -t, then Type=forking: up once the master is found by its PIDFile=.
    record = roost.wait_state("nginx", "up", timeout=60)
    master = int(record["pid"])
    assert nginx_get(roost, 80) == "<h1>from nginx</h1>"
    workers = {p["pid"] for p in roost.call("tree", services=["nginx"])["services"][0][
        "processes"] if not p["main"]}
    assert workers
    # ExecReload=nginx -s reload: a new server, by the same master with new workers.
    conf = Path(f"/proc/{roost.host_pid(master)}/root/etc/nginx/conf.d/roost.conf")
    conf.write_text("server { listen 127.0.0.1:8081; return 200 'reloaded'; }\n")
    (after,) = roost.call("reload", services=["nginx"])
    assert (after["state"], after["pid"]) == ("up", master)
    assert wait_for(lambda: nginx_get(roost, 8081) == "reloaded", timeout=20,
                    what="the reloaded server")
    # Killed, the master is restarted (ExecStartPre=, the fork, its pid file) ...
    roost.call("signal", services=["nginx"], signal="KILL")
    master = int(restarted(roost, "nginx", master)["pid"])
    assert nginx_get(roost, 80) == "<h1>from nginx</h1>"
    # ... and a stop is its ExecStop=, start-stop-daemon --retry QUIT/5: a graceful quit.
    stopped_clean(roost, "nginx")
    assert "exec_stop" not in roost.status("nginx")["reason"], roost.status("nginx")
