"""`roost run -c DIR [--after SVC] -- CMD` as PID 1 of a fresh PID namespace.

The sidecar services start first in dependency order, the main command waits for the
ones named with `--after` to be ready, and when it exits the services stop in reverse
order and roost exits with the main command's status. Every program appends to one
event file, so the order in which things happened is read back afterwards.
"""

from __future__ import annotations

import _signal
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests import support
from tests.ns.supervisor_kit import ConfigDir
from tests.support import PYTHON, ROOST, Namespace, run_ns, wait_for

pytestmark = pytest.mark.usefixtures("unshare_required")

DEADLINE = 30.0


# A sidecar: waits argv[3] seconds, appends "NAME ready", signals readiness on fd 3, then
# appends "NAME stopped" on TERM and exits 0. Gives up after 60 s.
SIDECAR = r"""
import os, signal, sys, time
events, name, delay = sys.argv[1], sys.argv[2], float(sys.argv[3])
def note(text):
    fd = os.open(events, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(fd, f"{text}\n".encode())
    os.close(fd)
def on_term(signum, frame):
    note(f"{name} stopped")
    os._exit(0)
signal.signal(signal.SIGTERM, on_term)
time.sleep(delay)
note(f"{name} ready")
os.write(3, b"\n")
time.sleep(60)
os._exit(3)
"""

# The main command: appends "main ran", exits with argv[2].
MAIN = r"""
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
os.write(fd, b"main ran\n")
os.close(fd)
sys.exit(int(sys.argv[2]))
"""

# The main command as a long runner with no TERM handler: appends "main ran", sleeps.
MAIN_WAITS = r"""
import os, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
os.write(fd, b"main ran\n")
os.close(fd)
time.sleep(60)
sys.exit(3)
"""


def sidecar(config: ConfigDir, name: str, events: Path, delay: float, **keys: object) -> None:
    """A sidecar NAME that is ready (fd:3) `delay` seconds after it starts."""
    config.service(name, command=[*config.python("sidecar", SIDECAR), str(events), name,
                                  str(delay)], ready="fd:3", stop_timeout=5, **keys)


def events_of(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def run_main(config: ConfigDir, after: str, events: Path, code: int) -> support.Ran:
    """`roost run -c CONFIG --after AFTER -- MAIN` to its end, as PID 1 of a namespace."""
    return run_ns([*ROOST, "run", "-c", str(config.path), "--after", after,
                   "--control", support.unique_control(), "--",
                   PYTHON, "-c", MAIN, str(events), str(code)], timeout=DEADLINE)


def test_main_waits_for_its_sidecars_and_they_stop_after_it_in_reverse_order(
        tmp_path: Path) -> None:
    config = ConfigDir(tmp_path / "conf")
    events = tmp_path / "events"
    # cache becomes ready only well after it starts: a main command that did not wait
    # for it would run first.
    sidecar(config, "db", events, 0.2)
    sidecar(config, "cache", events, 0.5, requires=["db"])
    ran = run_main(config, "cache", events, 7)
    assert ran.rc == 7, ran
    assert events_of(events) == ["db ready", "cache ready", "main ran",
                                 "cache stopped", "db stopped"], ran


def test_a_failed_sidecar_keeps_the_main_command_from_starting(tmp_path: Path) -> None:
    config = ConfigDir(tmp_path / "conf")
    events = tmp_path / "events"
    config.service("broken", command=[PYTHON, "-c", "import sys; sys.exit(4)"],
                   ready="fd:3", restart="never")
    ran = run_main(config, "broken", events, 0)
    assert ran.rc == 1, ran
    assert "broken failed" in ran.err and "not starting" in ran.err, ran
    assert events_of(events) == []


def test_term_from_the_runtime_ends_main_then_sidecars(tmp_path: Path) -> None:
    config = ConfigDir(tmp_path / "conf")
    events = tmp_path / "events"
    sidecar(config, "db", events, 0.0)
    argv = [*ROOST, "run", "-c", str(config.path), "--after", "db", "--grace", "20",
            "--control", support.unique_control(), "--",
            PYTHON, "-c", MAIN_WAITS, str(events)]
    with Namespace(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as ns:
        wait_for(lambda: "main ran" in events_of(events), timeout=DEADLINE,
                 what="the main command to start")
        start = time.monotonic()
        ns.signal(_signal.SIGTERM)
        rc = ns.wait(timeout=DEADLINE)
        err = ns.proc.stderr.read().decode() if ns.proc.stderr else ""
    assert rc == 128 + _signal.SIGTERM, err
    assert events_of(events) == ["db ready", "main ran", "db stopped"], err
    # The main command died of the TERM at once: nothing waited for the 20 s grace.
    assert time.monotonic() - start < 15, err


def test_an_unknown_after_starts_nothing(tmp_path: Path) -> None:
    config = ConfigDir(tmp_path / "conf")
    events = tmp_path / "events"
    sidecar(config, "db", events, 0.0)
    ran = run_main(config, "dbb", events, 0)
    assert ran.rc == 2, ran
    assert f"--after dbb: no such service in {config.path}" in ran.err, ran
    assert events_of(events) == []


# Asks the demo's web server for its page, and prints it.
FETCH = "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:8090/').read())"


def test_the_demo_serves_a_command_run_after_its_web_service(tmp_path: Path) -> None:
    """The README's sidecar line: `web` counts as up only once it accepts connections."""
    demo = tmp_path / "demo"
    shutil.copytree(support.REPO / "examples" / "demo", demo,
                    ignore=shutil.ignore_patterns("logs"))
    # Its own network namespace, with loopback up: port 8090 is not the host's.
    ran = run_ns(["/bin/sh", "-c", 'ip link set lo up && exec "$@"', "sh",
                  *ROOST, "run", "-c", str(demo), "--after", "web",
                  "--control", support.unique_control(), "--", PYTHON, "-c", FETCH],
                 timeout=60, extra_unshare=["--net"])
    assert ran.rc == 0, ran
    assert "b'hello from roost\\n'" in ran.out, ran
