"""Reload: an invalid configuration changes nothing and says why; a valid one applies only
the differences, so an unchanged service keeps its process."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.ns.supervisor_kit import (
    ConfigDir,
    Roost,
    both_modes,
    running,
)
from tests.support import proc_state, wait_for

# Each test is bounded well below the suite's timeout: a hang fails fast.
pytestmark = pytest.mark.timeout(120)

REPORT = """
import os, sys, time
print("GREETING=" + os.environ.get("GREETING", "-"), flush=True)
while True:
    time.sleep(60)
"""


def pids(roost: Roost) -> dict[str, int | None]:
    return {r["name"]: r["pid"] for r in roost.call("status")}


def build(config: ConfigDir) -> list[str]:
    report = config.python("report", REPORT)
    config.service("keep", command=["sleep", "600"])
    config.service("change", command=report, environment={"GREETING": "hello"})
    config.service("drop", command=["sleep", "600"])
    config.service("dependent", command=["sleep", "600"], requires=["keep"])
    return report


@both_modes
def test_invalid_reload_changes_nothing_and_says_why(tmp_path: Path, mode: str) -> None:
    config = ConfigDir(tmp_path / "conf")
    build(config)
    with running(config, mode, tmp_path) as roost:
        for name in ("keep", "change", "drop", "dependent"):
            roost.wait_state(name, "up")
        before = pids(roost)
        # One good change and two errors: none of it may be applied.
        config.service("change", command=["sleep", "601"])
        bad = config.service("broken", command=["sleep", "600"], restart="sometimes")
        config.service("loop", command=["sleep", "600"], requires=["loop2"])
        config.service("loop2", command=["sleep", "600"], requires=["loop"])
        result = roost.cli("reload")
        assert result.returncode == 1
        assert "the new configuration is invalid; nothing changed" in result.stderr
        assert (f"{bad}:2: restart: expected one of always, on-success, on-failure, "
                "on-abnormal, on-abort, on-watchdog, never; got 'sometimes'") in result.stderr
        assert "dependency cycle: loop -> loop2 -> loop" in result.stderr
        assert pids(roost) == before
        assert sorted(pids(roost)) == ["change", "dependent", "drop", "keep"]

        # The same through SIGHUP: refused, said on roost's output.
        roost.signal(signal.SIGHUP)
        roost.wait_output(r"reload refused, the running configuration stays:\n.*broken\.toml:2")
        assert pids(roost) == before
        assert roost.alive()


@both_modes
def test_valid_reload_applies_only_the_differences(tmp_path: Path, mode: str) -> None:
    config = ConfigDir(tmp_path / "conf")
    report = build(config)
    with running(config, mode, tmp_path) as roost:
        for name in ("keep", "change", "drop", "dependent"):
            roost.wait_state(name, "up")
        roost.wait_output(r"change \| GREETING=hello")
        before = pids(roost)
        drop_host = roost.host_pid(before["drop"] or 0)
        # Rewritten with the same content (and comments): not a change.
        (config.path / "keep.toml").write_text('# still the same\ncommand = ["sleep", "600"]\n')
        config.service("change", command=report, environment={"GREETING": "bonjour"})
        (config.path / "drop.toml").unlink()
        config.service("added", command=["sleep", "600"], requires=["keep"])
        config.service("manual", command=["sleep", "600"], autostart=False)
        result = roost.cli("reload")
        assert result.returncode == 0, result.stderr
        assert result.stdout == ("reloaded; added: added, manual; removed: drop; "
                                 "changed: change\n")
        roost.wait_state("added", "up")
        roost.wait_state("change", "up")
        roost.wait_output(r"change \| GREETING=bonjour")
        after = pids(roost)
        assert sorted(after) == ["added", "change", "dependent", "keep", "manual"]
        assert after["keep"] == before["keep"]
        assert after["dependent"] == before["dependent"]
        assert after["change"] != before["change"]
        assert after["manual"] is None
        wait_for(lambda: proc_state(drop_host) is None, timeout=10, what="drop to end")
        assert "drop: removed" in roost.output()

        # Nothing changed since: a reload through SIGHUP is a no-op.
        roost.signal(signal.SIGHUP)
        roost.wait_output(r"reloaded on SIGHUP: nothing changed$")
        assert pids(roost) == after
        result = roost.cli("reload")
        assert result.stdout == "reloaded: nothing changed\n"


@both_modes
def test_reload_changing_a_requirement_restarts_what_requires_it(tmp_path: Path,
                                                                   mode: str) -> None:
    config = ConfigDir(tmp_path / "conf")
    build(config)
    with running(config, mode, tmp_path) as roost:
        for name in ("keep", "dependent"):
            roost.wait_state(name, "up")
        before = pids(roost)
        config.service("keep", command=["sleep", "599"])
        result = roost.cli("reload")
        assert result.returncode == 0, result.stderr
        assert result.stdout == "reloaded; changed: keep\n"
        roost.wait_state("keep", "up")
        record = roost.wait_state("dependent", "up")
        after = pids(roost)
        assert after["keep"] != before["keep"]
        # What requires a restarted service is restarted with it, after it.
        assert record["pid"] != before["dependent"]
        assert after["change"] == before["change"]
