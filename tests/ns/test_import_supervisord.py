"""A supervisord configuration, imported and run by roost as PID 1 of a PID namespace.

Two web servers from one `[program:web]` with `numprocs = 2`, each on a port of its
own through `%(process_num)d`: `roost import supervisord -o` writes them, `roost up`
runs them, each answers a real HTTP request, a killed one is restarted, and a stop
leaves nothing.
"""

from __future__ import annotations

import random
import socket
import subprocess
import urllib.request
from pathlib import Path

import pytest

from tests import support
from tests.ns.supervisor_kit import ConfigDir, running
from tests.support import PYTHON, ROOST

pytestmark = pytest.mark.timeout(120)


def _free_pair() -> str:
    """A prefix P with ports P0 and P1 both free on 127.0.0.1."""
    for prefix in random.sample(range(2000, 6000), 200):
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", prefix * 10))
                b.bind(("127.0.0.1", prefix * 10 + 1))
            return str(prefix)
        except OSError:
            continue
    raise AssertionError("no two free ports in a row on 127.0.0.1")


def _get(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as reply:
        return int(reply.status)


def test_an_imported_supervisord_program_runs_under_roost(tmp_path: Path) -> None:
    prefix = _free_pair()  # the ports are prefix0 and prefix1: %(process_num)d appended
    ports = [int(prefix + "0"), int(prefix + "1")]
    (tmp_path / "www").mkdir()
    conf = tmp_path / "supervisord.conf"
    conf.write_text(f"""
[supervisord]
logfile=/dev/null

[program:web]
command={PYTHON} -m http.server --bind 127.0.0.1 %(ENV_BASE)s%(process_num)d ; a comment
numprocs=2
process_name=%(program_name)s-%(process_num)d
directory={tmp_path}/www
autorestart=true
stopsignal=TERM
stopwaitsecs=5
""")
    out = tmp_path / "roost"
    imported = subprocess.run([*ROOST, "import", "supervisord", str(conf), "-o", str(out)],
                              env={"BASE": prefix, "PATH": "/usr/bin:/bin"},
                              capture_output=True, text=True, timeout=30, check=False)
    assert imported.returncode == 0, imported.stderr
    assert sorted(p.name for p in out.iterdir()) == ["web-0.toml", "web-1.toml"]
    with running(ConfigDir(out), "pid1", tmp_path) as roost:
        for name, port in zip(("web-0", "web-1"), ports, strict=True):
            roost.wait_state(name, "up")
            assert support.wait_for(lambda p=port: _try_get(p), timeout=20,
                                    what=f"web on {port}") == 200
        first = roost.status("web-0")["pid"]
        roost.call("signal", services=["web-0"], signal="KILL")
        support.wait_for(lambda: roost.status("web-0")["pid"] not in (None, first),
                         what="web-0 restarted")
        assert support.wait_for(lambda: _try_get(ports[0]), timeout=20) == 200
        result = roost.cli("stop", "web-0", "web-1")
        assert result.returncode == 0, result.stderr
        assert [roost.status(n)["state"] for n in ("web-0", "web-1")] == ["down", "down"]


def _try_get(port: int) -> int | None:
    try:
        return _get(port)
    except OSError:
        return None
