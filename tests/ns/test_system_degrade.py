"""`roost init` with a broken configuration: what the errors do not reach still starts.

Each init runs as PID 1 of fresh PID, mount, UTS and network namespaces (tests/ns/test_system.py's
SystemNs); `roost status` is asked through the init's own control socket.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.ns.test_system import POWEROFF_DEATH, SLEEPER, SystemNs, write_config
from tests.support import require_unshare

pytestmark = pytest.mark.timeout(120)
CONTROL = "@roost/control"  # the namespace has no /run of its own


@pytest.fixture
def init(tmp_path: Path):
    """Start one `roost init -c DIR`; torn down at the end of the test."""
    require_unshare()
    made: list[SystemNs] = []

    def make(config: Path) -> SystemNs:
        made.append(SystemNs(tmp_path / f"ns{len(made)}", config))
        return made[-1]

    yield make
    for instance in made:
        instance.close()


def status(system: SystemNs) -> dict[str, dict[str, object]]:
    out = system.client("status", "--json", "--control", CONTROL)
    rows = {r["name"]: r for r in json.loads(out.stdout)}
    # 0 only when every wanted service is up or done: a set-aside one is failed.
    settled = all(r["state"] in ("up", "done") for r in rows.values())
    assert out.returncode == (0 if settled else 3), out
    return rows


def test_one_bad_file_costs_only_what_it_reaches(tmp_path: Path, init) -> None:
    """db and its wanter start; web (unknown requirement), its requirer and a file that is
    not TOML are failed with their errors in `roost status`; a fixed reload starts them."""
    config = write_config(tmp_path / "cfg", {
        "db": SLEEPER,
        "web": 'command = ["sleep", "300"]\nrequires = ["db", "cache"]\n',
        "api": 'command = ["sleep", "300"]\nrequires = ["web"]\n',
        "cron": 'command = ["sleep", "300"]\nwants = ["web"]\n',
        "typo": 'command = ["sleep", "300"\n',
    }, settings="log_keep = 0\n")
    system = init(config)
    system.wait_log(r"db: up")
    system.wait_log(r"cron: up")
    rows = status(system)
    assert (rows["db"]["state"], rows["cron"]["state"]) == ("up", "up"), rows
    assert rows["web"]["state"] == "failed"
    assert rows["web"]["reason"] == "web.toml:2: requires: cache: no such service", rows["web"]
    assert rows["api"]["state"] == "failed"
    assert "web" in str(rows["api"]["reason"]), rows["api"]
    assert rows["typo"]["state"] == "failed"
    assert str(rows["typo"]["reason"]).startswith("typo.toml:1: TOML syntax:"), rows["typo"]
    # A bad setting costs no service: its default holds, and status names it.
    assert rows["roost.toml"]["state"] == "failed"
    assert "log_keep: must be 1 or more" in str(rows["roost.toml"]["reason"])
    table = system.client("status", "--control", CONTROL)
    print(table.stdout)
    assert "cache: no such service" in table.stdout, table
    # Asked by name, a set-aside service answers with its error, not "no such service".
    detail = system.client("status", "web", "--control", CONTROL)
    assert detail.returncode == 3, detail
    assert "failed" in detail.stdout and "cache: no such service" in detail.stdout, detail
    log = system.log()
    assert "Traceback" not in log, log
    assert "emergency shell" not in log, log

    # Fixed: one reload brings every set-aside service, and the failed rows are gone.
    write_config(config, {"web": 'command = ["sleep", "300"]\nrequires = ["db"]\n',
                          "typo": SLEEPER}, settings="log_keep = 2\n")
    out = system.client("reload", "--control", CONTROL)
    assert out.returncode == 0, out
    system.wait_log(r"api: up")
    rows = status(system)
    assert {name: row["state"] for name, row in rows.items()} == dict.fromkeys(
        ("api", "cron", "db", "typo", "web"), "up"), rows
    assert system.client("poweroff").returncode == 0
    assert system.wait() == POWEROFF_DEATH, system.log()


def test_nothing_can_start_runs_the_shell_and_init_stays(tmp_path: Path, init) -> None:
    """Every file broken: the configured emergency shell runs, status lists the errors."""
    marker = tmp_path / "shell-ran"
    shell = tmp_path / "emergency"
    shell.write_text(f"#!/bin/sh\necho ran > {marker}\n")
    shell.chmod(0o755)
    config = write_config(tmp_path / "cfg", {
        "only": 'command = ["sleep", "300"]\nrestart = "sometimes"\n',
    }, settings=f'emergency_shell = "{shell}"\n')
    system = init(config)
    system.wait_log(r"no service started")
    system.wait_log(r"emergency shell ended \(exited 0\)")
    assert marker.read_text() == "ran\n"
    rows = status(system)
    assert rows["only"]["state"] == "failed"
    assert "restart: expected one of" in str(rows["only"]["reason"])
    assert system.client("poweroff").returncode == 0
    assert system.wait() == POWEROFF_DEATH, system.log()


def test_no_default_shell_in_a_namespace(tmp_path: Path, init) -> None:
    """Nothing can start, no shell configured: in a PID namespace none runs (the console is
    the host's), and init still answers and powers off."""
    config = write_config(tmp_path / "cfg", {"only": 'command = ["no-such-program-x"]\n'})
    system = init(config)
    system.wait_log(r"no service started")
    rows = status(system)
    assert "command not found" in str(rows["only"]["reason"]), rows
    assert "emergency shell" not in system.log()
    assert system.client("poweroff").returncode == 0
    assert system.wait() == POWEROFF_DEATH, system.log()
