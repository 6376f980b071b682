"""Real daemons from Debian packages, daemonizing the classic way, under roost.

nginx (package nginx: a master that forks away, writes its pid file and keeps
workers) and dnsmasq (package dnsmasq-base: a double fork whose launcher waits for the
daemon, then a pid file). Each runs with a configuration of its own in a temporary
directory, on a free loopback port. roost must see all their processes, restart the
service when the master is killed, and leave nothing behind when it stops.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import time
import urllib.request
from pathlib import Path

import pytest

from tests import debs, support
from tests.ns.test_tracking import alive, call, roost_env

MEANS = ["cgroup", "proc-connector"]


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def need(binary: str) -> str:
    path = debs.program(binary)
    if path is None:
        pytest.skip(f"SKIPPED: {binary} is neither unpacked nor installed "
                    f"(python -m tests.debs unpacks package {debs.PROGRAMS[binary]})")
    return path


def environment(path: str) -> list[str]:
    """The service's `environment` line for an unpacked daemon's libraries, if it needs one."""
    pairs = ", ".join(f"{k} = {json.dumps(v)}" for k, v in debs.environment(path).items())
    return [f"environment = {{ {pairs} }}"] if pairs else []


def nginx_service(env, tmp: Path) -> int:  # type: ignore[no-untyped-def]
    nginx = need("nginx")
    port = free_port()
    for d in ("body", "proxy", "fastcgi", "uwsgi", "scgi", "logs"):
        (tmp / "nginx" / d).mkdir(parents=True, exist_ok=True)
    root = tmp / "nginx"
    (root / "nginx.conf").write_text(f"""
daemon on;
master_process on;
worker_processes 2;
pid {root}/nginx.pid;
error_log {root}/logs/error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{ return 200 "roost\\n"; }}
    }}
}}
""")
    env.service("nginx", [
        "command = " + json.dumps([nginx, "-p", str(root), "-c", str(root / "nginx.conf")]),
        'type = "forking"', f'pid_file = "{root}/nginx.pid"', 'restart = "always"',
        "restart_delay = 0.1", "stop_timeout = 5", "start_timeout = 20", *environment(nginx)])
    return port


def dnsmasq_service(env, tmp: Path) -> int:  # type: ignore[no-untyped-def]
    dnsmasq = need("dnsmasq")
    port = free_port(socket.SOCK_DGRAM)
    env.service("dnsmasq", [
        "command = " + json.dumps([
            dnsmasq, "--conf-file=/dev/null", f"--port={port}", "--listen-address=127.0.0.1",
            "--bind-interfaces", f"--pid-file={tmp}/dnsmasq.pid", "--user=root", "--group=root",
            "--no-resolv", "--no-hosts", "--address=/roost.test/192.0.2.7"]),
        'type = "forking"', f'pid_file = "{tmp}/dnsmasq.pid"', 'restart = "always"',
        "restart_delay = 0.1", "stop_timeout = 5", "start_timeout = 20", *environment(dnsmasq)])
    return port


def http_get(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
        return r.read().decode()


def dns_a(port: int, name: str = "roost.test") -> str:
    """One A query over UDP; the first answer's address."""
    query = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
    query += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    query += struct.pack(">HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        s.sendto(query, ("127.0.0.1", port))
        data, _ = s.recvfrom(512)
    return ".".join(str(b) for b in data[-4:])


def family(env, main: int) -> set[int]:  # type: ignore[no-untyped-def]
    """Host PIDs of a daemon's main process and everything below it."""
    host = env.host_pid(main)
    return {host, *support.descendants(host)}


@pytest.mark.timeout(90)
@pytest.mark.parametrize("means", MEANS)
def test_real_daemons_are_tracked_restarted_and_stopped(means: str, tmp_path: Path) -> None:
    with roost_env(means, tmp_path) as env:
        web = nginx_service(env, tmp_path)
        dns = dnsmasq_service(env, tmp_path)
        env.start()
        for name in ("nginx", "dnsmasq"):
            env.wait_state(name, "up", timeout=30)
        assert http_get(web) == "roost\n"
        assert dns_a(dns) == "192.0.2.7"

        # nginx: a master and its two workers; dnsmasq: one daemon. All of them, and
        # only them, in `roost tree`; the main process is the one in the pid file.
        support.wait_for(lambda: len(env.tree("nginx")["services"][0]["processes"]) == 3,
                         timeout=10, what="nginx's master and two workers")
        for name, pid_file in (("nginx", tmp_path / "nginx" / "nginx.pid"),
                               ("dnsmasq", tmp_path / "dnsmasq.pid")):
            entry = env.tree(name)["services"][0]
            main = env.status(name)[name]["pid"]
            assert main == int(pid_file.read_text().split()[0]), entry
            visible = env.visible()
            shown = {visible[p["pid"]] for p in entry["processes"]}
            assert shown == family(env, main), (name, entry)
            assert entry["tracking"] == means
            assert [p["pid"] for p in entry["processes"] if p["main"]] == [main]

        # Kill each master: the service comes back with a new one; its old workers go.
        for name in ("nginx", "dnsmasq"):
            old_main = env.status(name)[name]["pid"]
            old = family(env, old_main)
            os.kill(env.host_pid(old_main), signal.SIGKILL)
            r = env.wait_state(name, "up", other_than=old_main, timeout=30)
            assert r["restarts"] >= 1, r
            support.wait_for(lambda o=old: not any(alive(p) for p in o), timeout=10,
                             what=f"the old {name} processes to be gone")
        support.wait_for(lambda: len(env.tree("nginx")["services"][0]["processes"]) == 3,
                         timeout=10, what="nginx's new master and workers")
        assert http_get(web) == "roost\n"
        assert dns_a(dns) == "192.0.2.7"

        # Stop: nothing of either daemon remains.
        last = {name: family(env, env.status(name)[name]["pid"]) for name in ("nginx", "dnsmasq")}
        call(env.addr, "stop", services=["nginx", "dnsmasq"], timeout=60)
        for name, pids in last.items():
            assert env.status(name)[name]["state"] == "down"
            assert not [p for p in pids if alive(p)], name
            assert env.tree(name)["services"][0]["processes"] == []
        if env.cgroup is not None:
            for name in last:
                assert (env.cgroup / f"{name}.service" / "cgroup.procs").read_text() == ""
        time.sleep(0.2)
        with pytest.raises(OSError):
            http_get(web)
