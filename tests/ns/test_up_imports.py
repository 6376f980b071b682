"""`roost up` loads no client code: neither the command line nor argparse stays in the
supervisor's memory for as long as it runs (bench/RESULTS.md, memory at 100 services)."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest

from tests.ns.supervisor_kit import ConfigDir
from tests.ns.test_run_startup import _launcher_argv
from tests.support import unique_control

pytestmark = pytest.mark.timeout(60)


def test_roost_up_imports_neither_the_client_nor_argparse(tmp_path: Path) -> None:
    config = ConfigDir(tmp_path / "conf")
    config.service("svc", command=["sleep", "600"])
    argv = [*_launcher_argv(), "up", "-c", str(config.path), "--control", unique_control()]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    seen = []
    try:
        assert proc.stderr is not None  # roost's console, and the interpreter's import times
        while "svc: up" not in (line := proc.stderr.readline()):
            assert line, "roost up ended before svc was up"
            seen.append(line)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=30)
    err = "".join(seen) + rest
    imported = {line.rsplit("|", 1)[1].strip() for line in err.splitlines()
                if line.startswith("import time:") and "|" in line}
    assert "roost.up" in imported and "roost.supervise.supervisor" in imported
    assert not {"argparse", "roost.cli", "roost.cli_parser", "roost.cli_show"} & imported
