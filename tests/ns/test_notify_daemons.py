"""Real daemons that speak sd_notify natively, under roost as PID 1 and as a subreaper.

redis-server `--supervised systemd` (up only at its READY=1, its STATUS= shown), haproxy
`-Ws` (a reload says RELOADING=1, then READY=1 from the same master), sshd's own notify
support (chrooted over its package, tests/ns/debian_root.py, with a login by `ssh`), and a
Python daemon using the `sdnotify` library (READY, STATUS and the watchdog).
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests import debs
from tests.ns.debian_root import DebianRoot
from tests.ns.supervisor_kit import ConfigDir, Roost, both_modes, running
from tests.support import PYTHON, wait_for

pytestmark = [pytest.mark.timeout(180), pytest.mark.usefixtures("unshare_required")]


def daemon(name: str) -> tuple[str, dict[str, str]]:
    """An unpacked Debian program and the environment it needs, or a loud failure."""
    path = debs.program(name)
    if path is None:
        pytest.fail(f"{name} is missing: run `python -m tests.debs`")
    return path, debs.environment(path)


def unix_get(path: Path) -> bytes:
    """One HTTP/1.0 GET over a unix socket; the whole response."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(str(path))
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    return data


@both_modes
def test_redis_is_up_at_its_own_ready_and_says_what_it_does(tmp_path: Path, mode: str) -> None:
    redis, env = daemon("redis-server")
    cli, cli_env = daemon("redis-cli")
    sock = tmp_path / "redis.sock"
    config = ConfigDir(tmp_path / "conf")
    config.service("redis", type="notify", environment=env, command=[
        redis, "--port", "0", "--unixsocket", str(sock), "--supervised", "systemd",
        "--daemonize", "no", "--save", "", "--dir", str(tmp_path)])
    with running(config, mode, tmp_path) as roost:
        record = roost.wait_state("redis", "up", timeout=30)
        # Up means its READY=1 arrived, so its socket is there and it answers at once.
        ping = subprocess.run([cli, "-s", str(sock), "ping"], capture_output=True, text=True,
                              timeout=10, env={**cli_env, "PATH": "/usr/bin:/bin"}, check=False)
        assert ping.stdout.strip() == "PONG", ping
        assert record["status"] == "Ready to accept connections", record
        assert (record["notify_refused"], record["notify_malformed"]) == (0, 0)
        table = roost.cli("status")
        assert "Ready to accept connections" in table.stdout, table.stdout


HAPROXY_CFG = """\
global
    master-worker
defaults
    mode http
    timeout connect 1s
    timeout client 5s
    timeout server 5s
frontend web
    bind unix@{sock}
    http-request return status 200 content-type text/plain string "{text}"
"""


@both_modes
def test_haproxy_reloads_as_it_says_with_the_same_master(tmp_path: Path, mode: str) -> None:
    haproxy, env = daemon("haproxy")
    sock = tmp_path / "haproxy.sock"
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(HAPROXY_CFG.format(sock=sock, text="before"))
    config = ConfigDir(tmp_path / "conf")
    config.service("haproxy", type="notify", environment=env,
                   command=[haproxy, "-Ws", "-f", str(cfg)])
    with running(config, mode, tmp_path) as roost:
        master = roost.wait_state("haproxy", "up", timeout=30)["pid"]
        assert unix_get(sock).endswith(b"before")
        cfg.write_text(HAPROXY_CFG.format(sock=sock, text="after"))
        # haproxy's master reloads on USR2: RELOADING=1 (seen as the phase), then READY=1.
        roost.cli("signal", "USR2", "haproxy")
        phases = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            record = roost.status("haproxy")
            phases.append(record["phase"])
            if "reloading" in phases and record["phase"] is None:
                break
            time.sleep(0.005)
        assert "reloading" in phases, "RELOADING=1 was seen"
        assert record["phase"] is None and record["state"] == "up", record
        assert record["pid"] == master, "the master stays; its workers are new"
        assert wait_for(lambda: unix_get(sock).endswith(b"after"), timeout=10,
                        what="the new configuration to serve")
        output = roost.output()
    assert "Loading success" in output


SDNOTIFY_DAEMON = """
import sdnotify, time
n = sdnotify.SystemdNotifier()
time.sleep(0.3)
n.notify("STATUS=warming up")
time.sleep(0.3)
n.notify("READY=1")
for beat in range(int(__import__("sys").argv[1])):
    n.notify(f"STATUS=beat {beat}\\nWATCHDOG=1")
    time.sleep(0.2)
time.sleep(600)
"""


@both_modes
def test_a_python_daemon_using_the_sdnotify_library(tmp_path: Path, mode: str) -> None:
    config = ConfigDir(tmp_path / "conf")
    # The library comes from the test's own interpreter (a pinned test extra): no -I -S.
    (config.path / "d.py").write_text(SDNOTIFY_DAEMON)
    config.service("d", type="notify", watchdog_sec=1, restart="on-watchdog",
                   command=[PYTHON, str(config.path / "d.py"), "10"])
    with running(config, mode, tmp_path) as roost:
        wait_for(lambda: roost.status("d")["status"] == "warming up", timeout=20,
                 what="STATUS= before READY=1")
        assert roost.status("d")["state"] == "starting"
        first = roost.wait_state("d", "up", timeout=20)["pid"]
        wait_for(lambda: roost.status("d")["status"] == "beat 9", timeout=20,
                 what="the last beat")
        # The beats stop: one watchdog_sec later roost ends it and, on-watchdog, restarts it.
        again = wait_for(lambda: (r := roost.status("d"))["pid"] not in (None, first) and r,
                         timeout=20, what="a restart after the watchdog")
        assert isinstance(again, dict)
        assert roost.status("d")["restarts"] >= 1
        assert "watchdog" in roost.output()


SSHD_SETUP = """
adduser --quiet --system --no-create-home --home /run/sshd --shell /usr/sbin/nologin sshd
install -d -m 0755 /run/sshd
cp /usr/share/openssh/sshd_config /etc/ssh/sshd_config
ssh-keygen -A
install -d -m 700 /root/.ssh
cp {key}.pub /root/.ssh/authorized_keys
"""


def test_sshd_is_up_at_its_own_ready_and_takes_a_login(tmp_path: Path) -> None:
    keygen, keygen_env = daemon("ssh-keygen")
    daemon("sshd")
    key = tmp_path / "id_ed25519"
    subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True,
                   timeout=30, env={"PATH": "/usr/bin:/bin", **keygen_env})
    root = DebianRoot(["openssh-server"], SSHD_SETUP.format(key=key))
    config = ConfigDir(tmp_path / "conf")
    config.service("sshd", type="notify", command=[
        "/usr/sbin/sshd", "-D", "-e", "-o", "ListenAddress=127.0.0.1"])
    roost = Roost(config, "pid1", tmp_path, chroot=root)
    try:
        roost.wait_ready(timeout=60)
        roost.wait_state("sshd", "up", timeout=60)
        assert roost.ns is not None
        done = root.client(roost.ns.init_pid, "ssh", "-i", str(key), "-o", "BatchMode=yes",
                           "-o", "StrictHostKeyChecking=no", "-o",
                           "UserKnownHostsFile=/dev/null", "root@127.0.0.1",
                           "echo logged in as $(id -un)")
        assert done.stdout.strip() == "logged in as root", done
        record = roost.status("sshd")
        assert (record["notify_refused"], record["notify_malformed"]) == (0, 0)
    finally:
        roost.close()
        root.close()
