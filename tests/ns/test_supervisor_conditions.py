"""Conditions and assertions under a real roost: a start skipped (done, with the reason, and
what requires it starts), a start failed by an assertion, and both looked at afresh when
the service is started again."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.ns.supervisor_kit import ConfigDir, both_modes, running

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("unshare_required")]


@both_modes
def test_a_condition_skips_an_assertion_fails_each_start_looks_again(tmp_path: Path,
                                                                     mode: str) -> None:
    flag = tmp_path / "flag"
    ran = tmp_path / "ran"
    config = ConfigDir(tmp_path / "conf")
    config.service("gated", command=["/bin/sh", "-c", f"echo x >> {ran}; exec sleep 60"],
                   condition_path_exists=[str(flag)],
                   condition_path_is_directory=["|/no/such/dir", f"|{tmp_path}"])
    config.service("after-gated", command=["/bin/sleep", "60"], requires=["gated"])
    config.service("asserted", command=["/bin/sleep", "60"], assert_file_not_empty=str(flag))
    with running(config, mode, tmp_path) as roost:
        gated = roost.wait_state("gated", "done", timeout=30)
        assert gated["pid"] is None, gated
        assert f"condition_path_exists={flag} is not met" in gated["reason"], gated
        # systemd's rule: a unit skipped by a condition does not fail what requires it.
        roost.wait_state("after-gated", "up", timeout=30)
        asserted = roost.wait_state("asserted", "failed", timeout=30)
        assert f"assertion failed: assert_file_not_empty={flag} is not met" in \
            asserted["reason"], asserted
        assert not ran.exists(), "a skipped start ran its command"
        flag.write_text("now\n")
        for name in ("gated", "asserted"):
            result = roost.cli("start", name)
            assert result.returncode == 0, result
            roost.wait_state(name, "up", timeout=30)
        assert ran.read_text() == "x\n"
        print(roost.cli("status").stdout)
