"""The installed `roost` launcher: signals blocked before the interpreter starts.

roost is installed as a user installs it, from its wheel: into a fresh venv, and
system-wide (the layout `pip install` gives Debian's /usr/bin/python3, under a
--root of the test's own, so the machine's /usr/local is untouched). For each, roost
runs as PID 1 of a fresh PID namespace and a TERM is sent the instant the
interpreter's image is in place, before any of roost's own code can have run: the
launcher must have blocked it already, so roost takes it and forwards it.

Where the system's env cannot block signals (busybox's, as on Alpine), roost must
still run, and say under -v that the window is open.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import debs
from tests.ns.debian_root import DebianRoot
from tests.support import REPO, ROOST, Namespace

pytestmark = [pytest.mark.timeout(300), pytest.mark.usefixtures("unshare_required")]

SYSTEM_PYTHON = "/usr/bin/python3"


@pytest.fixture(scope="module")
def installs() -> Iterator[dict[str, Path]]:
    """roost's wheel installed in a venv and system-wide: the bin directory of each."""
    work = Path(tempfile.mkdtemp(prefix="roost-launcher-"))
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    try:
        subprocess.run([*pip, "wheel", "--no-deps", "-w", str(work / "wheel"), str(REPO)],
                       check=True, timeout=240)
        (wheel,) = (work / "wheel").glob("roost-*.whl")
        venv = work / "venv"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                       timeout=60)
        subprocess.run([*pip, "--python", str(venv / "bin" / "python"), "install", "--no-deps",
                        str(wheel)], check=True, timeout=120)
        bins = {"venv": venv / "bin"}
        if not os.access(SYSTEM_PYTHON, os.X_OK):
            pytest.fail(f"{SYSTEM_PYTHON} is missing: the system-wide install cannot be tested")
        system = work / "system"
        subprocess.run([*pip, "--python", SYSTEM_PYTHON, "install", "--root", str(system),
                        "--no-deps", "--no-warn-script-location", str(wheel)], check=True,
                       timeout=120, env={**os.environ, "PIP_ROOT_USER_ACTION": "ignore"})
        bins["system"] = system / "usr" / "local" / "bin"
        for where in bins.values():
            interpreter = _interpreter(where)
            subprocess.run([interpreter, "-m", "compileall", "-q", str(where.parent / "lib")],
                           check=True, timeout=120, stdout=subprocess.DEVNULL)
        yield bins
    finally:
        subprocess.run(["rm", "-rf", "--one-file-system", str(work)], check=False, timeout=60)


def _interpreter(bin_dir: Path) -> str:
    """The interpreter pip wrote into roost-python's first line."""
    return (bin_dir / "roost-python").read_text().splitlines()[0].removeprefix("#!")


def _exe(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return None


@pytest.mark.parametrize("layout", ["venv", "system"])
def test_a_term_at_the_interpreters_first_instant_is_not_lost(
        installs: dict[str, Path], layout: str) -> None:
    launcher = installs[layout] / "roost"
    python = os.path.realpath(_interpreter(installs[layout]))
    acted = 0
    trials = 25
    for _ in range(trials):
        with Namespace([str(launcher), "run", "--", "sleep", "30"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as ns:
            pid = ns.init_pid
            deadline = time.monotonic() + 10
            # Busy-wait: the exe turns from sh to env to the interpreter; the TERM goes the
            # moment it is the interpreter, long before roost.early could have run.
            while _exe(pid) != python and time.monotonic() < deadline:
                pass
            assert _exe(pid) == python, f"the interpreter never started: {_exe(pid)}"
            ns.signal(signal.SIGTERM)
            code = ns.wait(timeout=20)
            err = ns.proc.stderr.read().decode() if ns.proc.stderr else ""
        assert code in (143, 128 + 15), (code, err)
        acted += 1
    assert acted == trials


def test_the_launcher_starts_roost_with_only_roost_in_its_environment(
        installs: dict[str, Path]) -> None:
    # The launcher's marker is roost's alone: the child does not see it, and the
    # faults that env blocked are unblocked again before the child starts.
    ran = subprocess.run([str(installs["venv"] / "roost"), "run", "-v", "--", "sh", "-c",
                          'echo "${ROOST_LAUNCHER-unset}"; grep SigBlk /proc/self/status'],
                         capture_output=True, text=True, timeout=30, check=False)
    assert ran.returncode == 0, ran
    assert ran.stdout.split() == ["unset", "SigBlk:", "0000000000000000"], ran
    assert "signal window closed" in ran.stderr, ran.stderr


def test_the_manual_pages_come_with_the_install(installs: dict[str, Path]) -> None:
    for layout, bin_dir in installs.items():
        for section, page in (("8", "roost"), ("1", "roost-run"), ("5", "roost.toml")):
            path = bin_dir.parent / "share" / "man" / f"man{section}" / f"{page}.{section}"
            ran = subprocess.run(["man", "-l", str(path)], capture_output=True, text=True,
                                 timeout=60, check=False, env={**os.environ, "MANPAGER": "cat"})
            assert ran.returncode == 0 and "SEE ALSO" in ran.stdout, (layout, path, ran.stderr)


BUSYBOX_ENV = """
ln -sf busybox /usr/bin/env
/usr/bin/env --block-signal true 2>/dev/null && { echo "env still blocks signals"; exit 1; }
true
"""


def test_with_busybox_env_roost_runs_and_says_the_window_is_open(tmp_path: Path) -> None:
    debs.archives(["busybox"])  # raises, naming the fix, when it was not downloaded
    root = DebianRoot(["busybox"], BUSYBOX_ENV)
    try:
        argv = root.wrap([*ROOST, "run", "-v", "--", "sh", "-c", "echo ran; exit 7"])
        with Namespace(argv, extra_unshare=["--net"], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE) as ns:
            out, err = ns.proc.communicate(timeout=60)
        assert ns.proc.returncode == 7, (out, err)
        assert out.decode().strip() == "ran"
        assert "signal window open" in err.decode(), err
    finally:
        root.close()
