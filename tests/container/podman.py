"""A real podman for the container tests, set up so that nothing of the host changes.

- podman comes from Debian, unpacked by tests/debs.py (installing it would enable
  podman.service, podman.socket, podman-restart.service and podman-auto-update.timer);
  runc is installed by tests/run.sh (it ships no unit).
- Its configuration is the test's own: CONTAINERS_CONF and CONTAINERS_STORAGE_CONF point
  into the work directory, never at /etc. `default_ulimits = []`, because these machines
  lack CAP_SYS_RESOURCE and podman's default limits would fail; `cgroupfs`, because
  there is no systemd here and the cgroups are hybrid; runc, because crun fails on them.
- The root filesystem is the host's own `/`, seen through an overlay whose upper layer is
  a tmpfs, so the image holds the interpreter, roost's worktree and coreutils at the
  paths the tests use, and nothing a container writes reaches the host. The overlay
  lives in a private mount namespace held open by one `sleep`, with a /run of its own
  (runc's and podman's state); every podman command enters it (nsenter), and all of it
  vanishes with that process.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from tests import debs
from tests.support import ROOST

# One podman command's deadline; a container run by a test has its own, shorter.
COMMAND_DEADLINE = 120.0

_CONTAINERS_CONF = """\
[containers]
default_ulimits = []
log_driver = "k8s-file"
seccomp_profile = "{seccomp}"

[engine]
cgroup_manager = "cgroupfs"
conmon_env_vars = [{conmon_env}]
conmon_path = ["{conmon}"]
events_logger = "file"
events_logfile_path = "{base}/events.log"
runtime = "runc"
tmp_dir = "{base}/tmp"

[engine.runtimes]
runc = ["{runc}"]

[network]
network_config_dir = "{base}/cni"
cni_plugin_dirs = ["{base}/cni-plugins"]
"""

_STORAGE_CONF = """\
[storage]
driver = "vfs"
graphroot = "{base}/storage"
runroot = "{base}/run"
"""

# PID 1 of the mount namespace: the overlay, then a line on stdout, then sleep until killed.
_HOLDER = r"""
set -e
mount -t tmpfs -o mode=0755 roost-run /run
mount -t tmpfs -o mode=0755 roost-upper "$1/layer"
mkdir "$1/layer/upper" "$1/layer/work"
layers="lowerdir=/,upperdir=$1/layer/upper,workdir=$1/layer/work"
mount -t overlay roost-rootfs -o "$layers" "$1/rootfs"
echo ready
exec sleep 86400
"""


class Unavailable(Exception):
    """podman cannot run here; the message says what is missing or what failed."""


class Ran:
    """How one podman command ended."""

    def __init__(self, argv: Sequence[str], rc: int, out: str, err: str, elapsed: float):
        self.argv = list(argv)
        self.rc = rc
        self.out = out
        self.err = err
        self.elapsed = elapsed

    def __repr__(self) -> str:
        return (f"Ran(rc={self.rc}, elapsed={self.elapsed:.2f}, argv={self.argv[-8:]!r}, "
                f"out={self.out[-2000:]!r}, err={self.err[-2000:]!r})")


def _find() -> tuple[str, str, str]:
    podman = debs.program("podman")
    conmon = debs.program("conmon")
    runc = shutil.which("runc") or ("/usr/sbin/runc" if os.path.exists("/usr/sbin/runc") else None)
    missing = [name for name, path in (("podman", podman), ("conmon", conmon), ("runc", runc))
               if path is None]
    if missing:
        raise Unavailable(f"{', '.join(missing)} not found: run tests/run.sh (it installs runc "
                          "and unpacks podman with `python -m tests.debs`)")
    assert podman and conmon and runc
    return podman, conmon, runc


class Podman:
    """podman with a private configuration, storage and root filesystem; close() undoes it."""

    def __init__(self) -> None:
        if os.geteuid() != 0:
            raise Unavailable("needs root (rootful podman, mounts)")
        self.podman, conmon, runc = _find()
        self.base = Path(tempfile.mkdtemp(prefix="roost-podman-", dir="/tmp"))
        self.base.chmod(0o755)
        # No static_dir or volume_path: `podman container cleanup`, which conmon runs, is
        # not told them, and must find the same database under graphroot as podman.
        for sub in ("layer", "rootfs", "tmp", "cni", "cni-plugins", "shared"):
            (self.base / sub).mkdir()
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "HOME": str(self.base),
            "TMPDIR": str(self.base / "tmp"),
            "CONTAINERS_CONF": str(self.base / "containers.conf"),
            "CONTAINERS_STORAGE_CONF": str(self.base / "storage.conf"),
            "CONTAINERS_REGISTRIES_CONF": str(self.base / "registries.conf"),
            **debs.environment(self.podman),
        }
        # conmon starts with these alone, and runs `podman container cleanup` (which
        # records the exit code) with them: without the configuration and the unpacked
        # libraries that podman fails, and `podman run` waits 20 s for the code.
        conmon_env = ", ".join(f'"{k}={v}"' for k, v in self.env.items() if k != "HOME")
        seccomp = debs.ROOT / "usr/share/containers/seccomp.json"
        (self.base / "containers.conf").write_text(_CONTAINERS_CONF.format(
            base=self.base, conmon=conmon, runc=runc, seccomp=seccomp, conmon_env=conmon_env))
        (self.base / "storage.conf").write_text(_STORAGE_CONF.format(base=self.base))
        (self.base / "registries.conf").write_text("")
        # The host's cgroup hierarchies are shared: containers go under a parent of the
        # test's own (not podman's libpod_parent), removed when empty at close().
        self.cgroup_parent = f"roost-test-{uuid.uuid4().hex[:12]}"
        self.rootfs = self.base / "rootfs"
        self.shared = self.base / "shared"
        self.holder: subprocess.Popen[bytes] | None = None
        try:
            self._hold()
        except BaseException:
            self.close()
            raise

    def _hold(self) -> None:
        self.holder = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", _HOLDER, "sh",
             str(self.base)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        assert self.holder.stdout is not None
        line = self.holder.stdout.readline()
        if line != b"ready\n":
            self.holder.wait(timeout=10)
            err = self.holder.stderr.read().decode() if self.holder.stderr else ""
            raise Unavailable(f"cannot mount the overlay root filesystem: {err.strip()}")

    # -- commands ------------------------------------------------------------

    def __call__(self, *args: str, timeout: float = COMMAND_DEADLINE,
                 check: bool = False) -> Ran:
        """Run `podman ARGS` in the overlay's mount namespace, with a deadline."""
        assert self.holder is not None
        argv = ["nsenter", "-t", str(self.holder.pid), "-m", "--", self.podman,
                "--cgroup-manager=cgroupfs", "--runtime", "runc", "--events-backend", "file",
                *args]
        start = time.monotonic()
        with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env=self.env, start_new_session=True) as proc:
            try:
                out, err = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(OSError):
                    os.killpg(proc.pid, signal.SIGKILL)
                out, err = proc.communicate(timeout=10)
                raise AssertionError(f"podman {' '.join(args)}: no exit within {timeout}s: "
                                     f"{err.decode()[-2000:]}") from None
        ran = Ran(argv, proc.returncode, out.decode(), err.decode(), time.monotonic() - start)
        if check and ran.rc != 0:
            raise AssertionError(f"podman {args[0]} failed: {ran}")
        return ran

    def run_args(self, name: str, *options: str) -> list[str]:
        """The arguments of `podman run` for a container of roost's worktree as its image."""
        # --rootfs is a flag: the image argument, last before the command, is the directory.
        return ["run", "--name", name, "--network", "none", "-v", f"{self.shared}:/shared",
                "--cgroup-parent", f"/{self.cgroup_parent}", *options,
                "--rootfs", str(self.rootfs)]

    def run(self, roost_args: Sequence[str], *options: str, timeout: float = 60.0) -> Ran:
        """`podman run --rm ... roost run ROOST_ARGS` to its end."""
        name = unique_name()
        try:
            return self(*self.run_args(name, "--rm", *options), *ROOST, "run", *roost_args,
                        timeout=timeout)
        finally:
            self.remove(name)

    def start(self, roost_args: Sequence[str], *options: str) -> str:
        """`podman run -d ... roost run ROOST_ARGS`; the container's name."""
        name = unique_name()
        self(*self.run_args(name, "-d", *options), *ROOST, "run", *roost_args, check=True)
        return name

    def exit_code(self, name: str) -> int:
        """The exit code podman recorded for a stopped container."""
        ran = self("inspect", "--format", "{{.State.ExitCode}}", name, check=True)
        return int(ran.out.strip())

    def running(self, name: str) -> bool:
        """True while the container runs."""
        ran = self("inspect", "--format", "{{.State.Running}}", name)
        return ran.rc == 0 and ran.out.strip() == "true"

    def remove(self, name: str) -> None:
        """Remove a container, killing it first if it still runs; quiet if it is gone."""
        self("rm", "--force", "--time", "0", "--ignore", name)

    def close(self) -> None:
        """Remove every container, end the mount namespace, delete the work directory."""
        if self.holder is not None:
            if self.holder.poll() is None:
                with contextlib.suppress(AssertionError):
                    self("rm", "--all", "--force", "--time", "0")
                with contextlib.suppress(OSError):
                    os.killpg(self.holder.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.holder.wait(timeout=10)
            for stream in (self.holder.stdout, self.holder.stderr):
                if stream is not None:
                    stream.close()
            self.holder = None
        self._remove_cgroups()
        shutil.rmtree(self.base, ignore_errors=True)

    def _remove_cgroups(self) -> None:
        """rmdir the test's cgroup parent, deepest first, in every hierarchy (empty by now)."""
        for hierarchy in Path("/sys/fs/cgroup").iterdir():
            top = hierarchy / self.cgroup_parent
            if not top.is_dir():
                continue
            dirs = sorted((d for d in top.rglob("*") if d.is_dir()), key=lambda d: -len(d.parts))
            for directory in [*dirs, top]:
                with contextlib.suppress(OSError):
                    directory.rmdir()


def unique_name() -> str:
    """A container name no other test uses."""
    return f"roost-test-{uuid.uuid4().hex[:12]}"
