"""Log files: a root roost never writes through a link another user planted, and refuses a
log directory another user could change."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.ns.supervisor_kit import ConfigDir, both_modes, running, shared_directory
from tests.support import have_root, wait_for

pytestmark = pytest.mark.timeout(120)

NOBODY = 65534


def as_nobody(script: str, *args: str) -> None:
    """Run a shell script as uid 65534, the local user who plants the trap."""
    subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                    "sh", "-ec", script, "sh", *args], check=True, timeout=30,
                   stdin=subprocess.DEVNULL)


@pytest.fixture
def precious(tmp_path: Path) -> Path:
    """A file only root may write: what the planted link points at."""
    if not have_root():
        pytest.skip("SKIPPED: needs root, to be the roost another user attacks")
    target = tmp_path / "precious"
    target.write_text("root's own\n")
    target.chmod(0o600)
    return target


@both_modes
def test_a_log_directory_made_by_another_user_is_refused(tmp_path: Path, precious: Path,
                                                         mode: str) -> None:
    with shared_directory() as shared:
        shared.chmod(0o1777)  # as /tmp is
        logs = shared / "demo-logs"
        # The demo's fixed /tmp path, made first by someone else, a link in it.
        as_nobody('mkdir -m 0777 "$1" && ln -s "$2" "$1/svc.log"', str(logs), str(precious))
        config = ConfigDir(tmp_path / "conf")
        config.settings(log_dir=str(logs), log_console=False)
        config.service("svc", command=["sh", "-c", "echo secret output; exec sleep 600"])
        with running(config, mode, tmp_path) as roost:
            record = roost.wait_state("svc", "failed", "backoff")
            assert record["pid"] is None
            reason = record["reason"]
            assert f"log directory {logs}" in reason, reason
            assert f"owned by uid {NOBODY}" in reason, reason
            assert f"log directory {logs}: {logs} is owned by uid {NOBODY}" in roost.output()
        assert precious.read_text() == "root's own\n"


@both_modes
def test_a_directory_others_may_write_in_is_refused(tmp_path: Path, precious: Path,
                                                   mode: str) -> None:
    logs = tmp_path / "open-logs"
    logs.mkdir()
    logs.chmod(0o777)  # roost's own, but anyone may swap what is in it
    config = ConfigDir(tmp_path / "conf")
    config.settings(log_dir=str(logs), log_console=False)
    config.service("svc", command=["sh", "-c", "echo hello; exec sleep 600"])
    with running(config, mode, tmp_path) as roost:
        record = roost.wait_state("svc", "failed", "backoff")
        assert "writable by group or others (mode 0777) without the sticky bit" in \
            record["reason"], record
        assert not list(logs.iterdir())


@both_modes
def test_a_link_planted_in_a_sticky_directory_is_not_followed(tmp_path: Path, precious: Path,
                                                              mode: str) -> None:
    with shared_directory() as shared:
        logs = shared / "sticky-logs"
        logs.mkdir()
        logs.chmod(0o1777)  # roost's own and sticky: others may add, not replace
        as_nobody('ln -s "$2" "$1/svc.log"; echo planted > "$1/other.log"', str(logs),
                  str(precious))
        config = ConfigDir(tmp_path / "conf")
        config.settings(log_dir=str(logs), log_console=False)
        config.service("svc", command=["sh", "-c", "echo one; echo two; exec sleep 600"])
        config.service("other", command=["sh", "-c", "echo three; exec sleep 600"])
        with running(config, mode, tmp_path) as roost:
            roost.wait_state("svc", "up")
            roost.wait_state("other", "up")
            # The lines are counted as lost, not written through the link or into
            # a file someone else owns.
            wait_for(lambda: roost.status("svc")["log_dropped"] == 2, timeout=10,
                     what="svc's two lines counted as dropped")
            wait_for(lambda: roost.status("other")["log_dropped"] == 1, timeout=10,
                     what="other's line counted as dropped")
            result = roost.cli("status")
            assert "svc: 2 lines never reached its log file" in result.stdout, result.stdout
            out = roost.output()
            # O_NOFOLLOW says ELOOP; with fs.protected_symlinks the kernel says EACCES first.
            assert f"cannot open log {logs}/svc.log" in out, out
            assert "refusing log file" in out and f"owner {NOBODY}" in out, out
        assert precious.read_text() == "root's own\n"
        assert (logs / "other.log").read_text() == "planted\n"
