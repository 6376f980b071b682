"""`roost up -c DIR` over a directory of Debian's own unit files, as the packages ship them.

memcached.service is copied unmodified; a drop-in replaces its ExecStart= (the package's
wrapper is not installed here) with the unpacked daemon on a free loopback port, as an
administrator's `systemctl edit` would. postgresql.service and tor.service, also as
shipped, are oneshots with RemainAfterExit=: once they exited 0 they stay up, with no
process. A unit roost refuses starts nothing at all.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests import debs
from tests.ns.supervisor_kit import ConfigDir, both_modes, running
from tests.ns.test_tracking_daemons import free_port
from tests.support import ROOST, wait_for

pytestmark = [pytest.mark.timeout(180), pytest.mark.usefixtures("unshare_required")]


def shipped(package: str, unit: str) -> Path:
    """A unit file as the Debian package ships it, unpacked into .cache/debs/units."""
    try:
        found = [u for u in debs.unit_files([package]) if u.name == unit]
    except subprocess.CalledProcessError as exc:
        pytest.fail(f"cannot fetch {package} from a Debian mirror: {exc}")
    assert found, f"{package} ships no {unit}"
    return found[0]


def memcached_version(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"version\r\n")
        return s.recv(100)


@both_modes
def test_debian_units_as_shipped_run_with_an_administrators_dropin(tmp_path: Path,
                                                                   mode: str) -> None:
    memcached = debs.program("memcached")
    if memcached is None:
        pytest.fail("memcached is missing: run `python -m tests.debs`")
    config = ConfigDir(tmp_path / "conf")
    for package, unit in (("memcached", "memcached.service"),
                          ("postgresql-common", "postgresql.service"), ("tor", "tor.service")):
        shutil.copyfile(shipped(package, unit), config.path / unit)
    port = free_port()
    env = " ".join(f"{k}={v}" for k, v in debs.environment(memcached).items())
    dropin = config.path / "memcached.service.d"
    dropin.mkdir()
    (dropin / "override.conf").write_text(
        "[Service]\nExecStart=\n"
        f"ExecStart={memcached} -p {port} -l 127.0.0.1 -U 0 -u nobody\n"
        + (f"Environment={env}\n" if env else ""))
    with running(config, mode, tmp_path) as roost:
        record = roost.wait_state("memcached", "up", timeout=30)
        assert record["pid"], record
        reply = wait_for(lambda: _answer(port), timeout=20)
        assert reply.startswith(b"VERSION "), reply
        for oneshot in ("postgresql", "tor"):
            stayed = roost.wait_state(oneshot, "up", timeout=30)
            assert (stayed["pid"], stayed["last_exit"]) == (None, "exited 0"), stayed
        out = roost.output()
        assert "memcached.service: ignored: ProtectSystem=" in out, out
        assert "ignored: RemainAfterExit=" not in out, out


def _answer(port: int) -> bytes | None:
    try:
        return memcached_version(port)
    except OSError:
        return None


def test_a_refused_unit_starts_nothing(tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    conf.mkdir()
    marker = tmp_path / "ran"
    (conf / "first.toml").write_text(f'command = ["/bin/touch", "{marker}"]\n')
    (conf / "dbus.service").write_text("[Unit]\nDescription=x\n\n[Service]\nType=dbus\n"
                                       "BusName=org.example\nExecStart=/bin/true\n")
    started = time.monotonic()
    proc = subprocess.run([*ROOST, "up", "-c", str(conf), "--control", str(tmp_path / "ctl")],
                          capture_output=True, text=True, timeout=60, check=False)
    print(f"roost up refused in {time.monotonic() - started:.2f}s")
    assert proc.returncode == 1, proc
    assert f"{conf}/dbus.service:5: Type: Type=dbus: roost cannot supervise it" in proc.stderr
    assert "nothing started" in proc.stderr, proc.stderr
    assert not marker.exists()


@both_modes
def test_a_template_instance_named_by_a_requirement_runs(tmp_path: Path, mode: str) -> None:
    out = tmp_path / "out"
    out.mkdir()
    config = ConfigDir(tmp_path / "conf")
    (config.path / "worker@.toml").write_text(
        f'command = ["/bin/sh", "-c", "echo %i %I > {out}/%i; exec sleep 60"]\n')
    (config.path / "echo@.service").write_text(
        f"[Service]\nType=oneshot\nExecStart=/bin/sh -c 'echo %n > {out}/%i'\n")
    config.service("front", command=["/bin/sleep", "60"],
                   requires=["worker@a-b", "echo@one"])
    with running(config, mode, tmp_path) as roost:
        roost.wait_state("front", "up", timeout=30)
        assert roost.status("worker@a-b")["state"] == "up"
        assert roost.status("echo@one")["state"] == "done"
        assert (out / "a-b").read_text() == "a-b a/b\n"
        assert (out / "one").read_text() == "echo@one.service\n"
