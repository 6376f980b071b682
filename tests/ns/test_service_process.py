"""What a service's process starts with beyond its account, for real: resource limits,
priority, OOM score, and its own directories (made safely, named in its environment,
the runtime one removed when it stops)."""

from __future__ import annotations

import os
import resource
import subprocess
from pathlib import Path

import pytest

from roost.kernel import proc
from tests.ns.debian_root import DebianRoot
from tests.ns.supervisor_kit import ConfigDir, Roost, both_modes, running
from tests.support import ROOST, wait_for

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("unshare_required")]

NOBODY = 65534
REPORT = r"""
import os, sys
out = open(sys.argv[1] + ".tmp", "w")
for line in open("/proc/self/limits"):
    if line.startswith(("Max open files", "Max processes", "Max core file size")):
        out.write(" ".join(line.split()) + "\n")
out.write(f"nice {os.getpriority(os.PRIO_PROCESS, 0)}\n")
out.write(f"oom {open('/proc/self/oom_score_adj').read().strip()}\n")
for line in open("/proc/self/status"):
    if line.startswith("NoNewPrivs:"):
        out.write(" ".join(line.split()) + "\n")
for kind in ("RUNTIME", "STATE", "CACHE", "LOGS", "CONFIGURATION"):
    out.write(f"{kind} {os.environ.get(kind + '_DIRECTORY', '-')}\n")
out.close()
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
import time; time.sleep(600)
"""


def report(path: Path) -> list[str]:
    wait_for(path.exists, timeout=20, what="the service's report")
    return path.read_text().splitlines()


@both_modes
def test_limits_priority_and_oom_score(tmp_path: Path, mode: str) -> None:
    config = ConfigDir(tmp_path / "conf")
    out = tmp_path / "report"
    config.service("svc", command=[*config.python("report", REPORT), str(out)],
                   limits={"nofile": "1000:2000", "nproc": 700, "core": 0},
                   nice=7, oom_score_adjust=300, no_new_privileges=True)
    with running(config, mode, tmp_path):
        lines = report(out)
    assert "Max open files 1000 2000 files" in lines
    assert "Max processes 700 700 processes" in lines
    assert "Max core file size 0 0 bytes" in lines
    assert "nice 7" in lines and "oom 300" in lines and "NoNewPrivs: 1" in lines


def test_a_limit_roost_cannot_grant_is_refused_at_check(tmp_path: Path) -> None:
    config = ConfigDir(tmp_path / "conf")
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    path = config.service("svc", command=["sleep", "1"], limits={"nofile": hard + 1})
    ran = subprocess.run([*ROOST, "check", str(config.path)], capture_output=True, text=True,
                         timeout=30, check=False)
    if proc.has_capability(24):  # CAP_SYS_RESOURCE: roost may raise its hard limit
        assert ran.returncode == 0, ran
    else:
        assert ran.returncode == 1
        assert ran.stdout.strip() == (
            f"{path}:2: limits: nofile: {hard + 1} is above roost's own hard limit ({hard}), "
            "which it may not raise (no CAP_SYS_RESOURCE)")


SHELL_REPORT = """
for kind in RUNTIME STATE CACHE LOGS CONFIGURATION; do
    eval "echo $kind \\${${kind}_DIRECTORY:--}"
done > /tmp/roost-report.tmp && mv /tmp/roost-report.tmp /tmp/roost-report
exec sleep 600
"""
# uid 65534 owns a directory in /run and plants a link to /etc in it.
PLANTED = f"""
install -d -o {NOBODY} -g {NOBODY} /run/shared
ln -s /etc /run/shared/evil
chown -h {NOBODY} /run/shared/evil
"""


def test_service_directories_made_owned_and_the_runtime_one_removed(tmp_path: Path) -> None:
    # /run, /var/lib and the rest are the chroot's (an overlay): the host's stay untouched.
    root = DebianRoot([], PLANTED)
    config = ConfigDir(tmp_path / "conf")
    # Written inside the chroot, where the test reads it through /proc/PID/root; a shell,
    # since uid 65534 may not run the test's interpreter under /root.
    config.service("svc", command=["/bin/sh", "-c", SHELL_REPORT],
                   user=str(NOBODY), runtime_directory=["app", "app/sub"],
                   runtime_directory_mode="0750", state_directory="app",
                   cache_directory="app", logs_directory="app",
                   configuration_directory="app", configuration_directory_mode="0700")
    config.service("evil", command=["sleep", "600"], user=str(NOBODY),
                   runtime_directory="shared/evil", restart="never")
    roost = Roost(config, "pid1", tmp_path, chroot=root)
    try:
        roost.wait_ready(timeout=60)
        lines = report(Path(f"/proc/{roost.pid}/root/tmp/roost-report"))
        pid = roost.wait_state("svc", "up")["pid"]
        inside = Path(f"/proc/{roost.host_pid(pid)}/root")
        assert "RUNTIME /run/app:/run/app/sub" in lines
        assert "STATE /var/lib/app" in lines and "CACHE /var/cache/app" in lines
        assert "LOGS /var/log/app" in lines and "CONFIGURATION /etc/app" in lines
        for path, mode in (("run/app", 0o750), ("run/app/sub", 0o750),
                           ("var/lib/app", 0o755), ("etc/app", 0o700)):
            info = (inside / path).stat()
            assert (info.st_uid, info.st_mode & 0o7777) == (NOBODY, mode), path
        # The planted link is not followed: evil fails to start, /etc stays root's.
        failed = roost.wait_state("evil", "failed")
        # O_DIRECTORY | O_NOFOLLOW on a link: ENOTDIR.
        assert failed["reason"] == ("cannot start: /run/shared/evil: not a directory roost "
                                    "may use (Not a directory)"), failed
        assert (inside / "etc").stat().st_uid == 0
        roost.call("stop", services=["svc"], wait=True, timeout=30)
        alive = Path(f"/proc/{roost.pid}/root")
        assert not (alive / "run/app").exists(), "the runtime directory goes at the stop"
        assert (alive / "var/lib/app").is_dir(), "the state directory stays"
    finally:
        roost.close()
        root.close()
    assert os.stat("/etc").st_uid == 0
