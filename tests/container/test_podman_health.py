"""Container health from roost: `podman healthcheck run` with `roost status --check`, and
with a test of `--ready-file`, turning healthy only once roost says it is ready.

The containers run roost from this worktree (tests/container/podman.py); their sidecar
configuration lives in /shared, and a file the test creates there opens the gate of a
service that is ready only then. Health checks run when asked (`--health-interval
disable`: podman's timers need systemd, which these machines lack).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.container.podman import Podman
from tests.support import PYTHON, ROOST, unique_control, wait_for

DEADLINE = 60.0

# Ready (fd 3) only once argv[1] exists; then sleeps.
GATED = r"""
import os, sys, time
while not os.path.exists(sys.argv[1]):
    time.sleep(0.05)
os.write(3, b"\n")
os.close(3)
while True:
    time.sleep(60)
"""


def sidecars(podman: Podman, tag: str) -> tuple[str, Path]:
    """A sidecar directory in /shared: `cache`, ready once the returned gate exists."""
    conf = podman.shared / f"conf-{tag}"
    conf.mkdir()
    (conf / "gated.py").write_text(GATED)
    gate = podman.shared / f"gate-{tag}"
    command = [PYTHON, "-I", "-S", f"/shared/{conf.name}/gated.py", f"/shared/{gate.name}"]
    (conf / "cache.toml").write_text(f"command = {json.dumps(command)}\nready = \"fd:3\"\n"
                                     "stop_timeout = 5\n")
    return f"/shared/{conf.name}", gate


def health(podman: Podman, name: str) -> tuple[int, str]:
    """Run the container's health check now: its exit code, and the status podman keeps."""
    ran = podman("healthcheck", "run", name)
    status = podman("inspect", "--format", "{{.State.Health.Status}}", name, check=True)
    return ran.rc, status.out.strip()


def turns_healthy(podman: Podman, name: str, gate: Path) -> list[tuple[int, str]]:
    """Unhealthy while the gate is shut; healthy once it opened. What podman said, in order."""
    said = []
    for _ in range(3):
        said.append(health(podman, name))
        assert said[-1][0] != 0 and said[-1][1] != "healthy", said
    gate.touch()

    def healthy() -> bool:
        said.append(health(podman, name))
        return said[-1] == (0, "healthy")

    wait_for(healthy, timeout=DEADLINE, interval=0.2, what="the container to turn healthy")
    return said


def test_health_cmd_roost_status_check_turns_healthy(podman: Podman) -> None:
    conf, gate = sidecars(podman, f"check-{os.getpid()}")
    path = f"{Path(ROOST[0]).parent}:/usr/sbin:/usr/bin:/sbin:/bin"
    name = podman.start(["-c", conf, "--", "sleep", "1000"],
                        "-e", f"PATH={path}", "-e", f"ROOST_CONTROL={unique_control()}",
                        "--health-cmd", "roost status --check", "--health-interval", "disable")
    try:
        said = turns_healthy(podman, name, gate)
        print(f"{name}: {said[:3]} ... {said[-1]}")
        assert podman.running(name)
    finally:
        podman.remove(name)


def test_health_cmd_on_the_ready_file_turns_healthy(podman: Podman) -> None:
    conf, gate = sidecars(podman, f"file-{os.getpid()}")
    name = podman.start(["--ready-file", "/run/ready", "-c", conf, "--after", "cache",
                         "--control", unique_control(), "--", "sleep", "1000"],
                        "--health-cmd", "test -e /run/ready", "--health-interval", "disable")
    try:
        said = turns_healthy(podman, name, gate)
        print(f"{name}: {said[:3]} ... {said[-1]}")
        content = podman("exec", name, "cat", "/run/ready", check=True).out
        assert content.startswith("running: pid "), content
    finally:
        podman.remove(name)
