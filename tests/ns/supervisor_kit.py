"""Tools for the supervisor's integration tests: a configuration directory, and `roost up`
run for real, as PID 1 of a PID namespace or as a plain subreaper process.

Every roost started here has deadlines and is torn down for sure: as PID 1 the kernel
kills its namespace; as a subreaper every descendant is killed and seen gone.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.support import (
    ROOST,
    Namespace,
    children_of,
    descendants,
    proc_state,
    require_unshare,
    unique_control,
    wait_for,
)

if TYPE_CHECKING:
    from tests.ns.debian_root import DebianRoot

PYTHON = sys.executable
MODES = ["pid1", "subreaper"]


def toml_value(value: object) -> str:
    """Render a Python value as TOML (enough for service files)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {toml_value(v)}"
                                for k, v in value.items()) + " }"
    raise TypeError(value)


class ConfigDir:
    """A configuration directory under construction."""

    def __init__(self, path: Path):
        self.path = path
        path.mkdir(parents=True, exist_ok=True)

    def service(self, name: str, **keys: object) -> Path:
        """Write NAME.toml with `keys`."""
        target = self.path / f"{name}.toml"
        target.write_text("".join(f"{k} = {toml_value(v)}\n" for k, v in keys.items()))
        return target

    def settings(self, **keys: object) -> None:
        """Write roost.toml."""
        (self.path / "roost.toml").write_text(
            "".join(f"{k} = {toml_value(v)}\n" for k, v in keys.items()))

    def script(self, name: str, text: str) -> str:
        """Write an executable script; return its path."""
        target = self.path / name
        target.write_text(text)
        target.chmod(0o755)
        return str(target)

    def python(self, name: str, code: str) -> list[str]:
        """A command running `code` with the test interpreter (no site: fast to start)."""
        target = self.path / f"{name}.py"
        target.write_text(code)
        return [PYTHON, "-I", "-S", str(target)]


def host_pid_in(root_pid: int, ns_pid: int) -> int | None:
    """The host PID of the process known as `ns_pid` inside the namespace of `root_pid`."""
    for pid in [root_pid, *descendants(root_pid)]:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("NSpid:"):
                        if int(line.split()[-1]) == ns_pid:
                            return pid
                        break
        except OSError:
            continue
    return None


def status_field(pid: int, field: str) -> str:
    """One field of /proc/PID/status."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key == field:
                return value.strip()
    raise KeyError(field)


def zombies(pids: list[int]) -> list[int]:
    return [pid for pid in pids if proc_state(pid) == "Z"]


class Roost:
    """`roost up -c DIR` under test, in one of MODES."""

    def __init__(self, config: ConfigDir, mode: str, workdir: Path, *,
                 args: tuple[str, ...] = (), env: dict[str, str] | None = None,
                 preexec: Callable[[], None] | None = None,
                 chroot: DebianRoot | None = None):
        self.config = config
        self.mode = mode
        self.chroot = chroot
        self.control = unique_control() if chroot is None else chroot.control
        self.out_path = workdir / f"roost-{uuid.uuid4().hex[:12]}.out"
        self._out = open(self.out_path, "wb")  # noqa: SIM115 - closed in close()
        argv = [*ROOST, "up", "-c", str(config.path), "--control", self.control, *args]
        popen: dict[str, Any] = {"stdout": self._out, "stderr": subprocess.STDOUT,
                                 "stdin": subprocess.DEVNULL, "env": env or dict(os.environ),
                                 "preexec_fn": preexec}
        self.ns: Namespace | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        if chroot is not None:
            # Its own network namespace too: the daemons' ports are its own 127.0.0.1.
            assert mode == "pid1", "a chrooted roost is PID 1 of its namespaces"
            require_unshare()
            self.ns = Namespace(chroot.wrap(argv), extra_unshare=["--net"], **popen)
        elif mode == "pid1":
            require_unshare()
            self.ns = Namespace(argv, **popen)
        elif mode == "nested":
            # A subreaper that is not PID 1: a shell is PID 1 of the namespace, roost its child.
            require_unshare()
            self.ns = Namespace(["/bin/sh", "-c", '"$@"; exit $?', "sh", *argv], **popen)
        else:
            self.proc = subprocess.Popen(argv, start_new_session=True, **popen)
        self.seen: set[int] = set()
        self.exit_code: int | None = None

    # -- the roost process -----------------------------------------------------------

    @property
    def pid(self) -> int:
        """roost's PID as the host sees it."""
        if self.ns is not None:
            if self.mode == "nested":
                found = wait_for(lambda: children_of(self.ns.init_pid), timeout=10,
                                 what="roost under the namespace's shell")
                return int(found[0])  # type: ignore[index]
            return self.ns.init_pid
        assert self.proc is not None
        return self.proc.pid

    def host_pid(self, pid: int) -> int:
        """Translate a PID reported by roost (or by a service) to the host's view."""
        if self.ns is None:
            return pid
        found = wait_for(lambda: host_pid_in(self.ns.init_pid, pid), timeout=5,
                         what=f"namespace pid {pid}")
        assert isinstance(found, int)
        return found

    def alive(self) -> bool:
        process = self.ns.proc if self.ns is not None else self.proc
        assert process is not None
        return process.poll() is None

    def signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def wait_exit(self, timeout: float = 30.0) -> int:
        process = self.ns.proc if self.ns is not None else self.proc
        assert process is not None
        try:
            self.exit_code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"roost did not exit within {timeout}s") from None
        return self.exit_code

    def processes(self) -> list[int]:
        """Every process under roost (host PIDs), roost excluded."""
        return descendants(self.pid)

    def close(self) -> None:
        """Kill roost and everything it started; make sure all of it is gone."""
        if self.ns is not None:
            with contextlib.suppress(AssertionError):
                self.seen.update(descendants(self.ns.init_pid))
            # The kernel kills the whole namespace with its PID 1.
            self.ns.kill()
        else:
            assert self.proc is not None
            if self.proc.poll() is None:
                self.seen.update(self.processes())
                for pid in [self.proc.pid, *self.seen]:
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
            # Orphans left behind re-parent to whatever is above roost: kill them too.
            for pid in self.seen:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
        # Gone means gone or, for a zombie of some other parent, dead.
        wait_for(lambda: all(proc_state(p) in (None, "Z") for p in self.seen), timeout=10,
                 what="every process roost started to be gone")
        self._out.close()

    # -- what roost says -----------------------------------------------------------------

    def output(self) -> str:
        return self.out_path.read_text(errors="replace")

    def wait_output(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        """Wait for a line of roost's output matching the regular expression `pattern`."""
        regex = re.compile(pattern, re.MULTILINE)

        def find() -> re.Match[str] | None:
            if not self.alive() and not regex.search(self.output()):
                raise AssertionError(f"roost exited:\n{self.output()}")
            return regex.search(self.output())

        found = wait_for(find, timeout=timeout, what=f"output /{pattern}/\n")
        assert isinstance(found, re.Match)
        return found

    # -- the control socket -------------------------------------------------------------------

    def call(self, cmd: str, **args: object) -> Any:
        from roost.control.client import Client

        with Client(self.control, timeout=20) as client:
            return client.call(cmd, **args)

    def wait_ready(self, timeout: float = 15.0) -> None:
        from roost.control.client import NotRunning

        def answered() -> bool:
            if not self.alive():
                raise AssertionError(f"roost exited early:\n{self.output()}")
            try:
                self.call("ping")
            except NotRunning:
                return False
            return True

        wait_for(answered, timeout=timeout, interval=0.02, what="roost to answer")

    def status(self, name: str) -> dict[str, Any]:
        (record,) = self.call("status", services=[name])
        assert isinstance(record, dict)
        if record.get("pid"):
            # Remember it for the teardown (it may be gone already: no waiting).
            host = (record["pid"] if self.ns is None
                    else host_pid_in(self.ns.init_pid, record["pid"]))
            if host is not None:
                self.seen.add(host)
        return record

    def wait_state(self, name: str, *states: str, timeout: float = 15.0) -> dict[str, Any]:
        """Wait until service `name` is in one of `states`; return its status record."""
        last: dict[str, Any] = {}

        def reached() -> bool:
            nonlocal last
            if not self.alive():
                raise AssertionError(f"roost exited:\n{self.output()}")
            last = self.status(name)
            return last["state"] in states

        try:
            wait_for(reached, timeout=timeout, interval=0.02)
        except AssertionError:
            raise AssertionError(f"{name} never reached {states}; last {last}\n"
                                 f"{self.output()[-3000:]}") from None
        return last

    def cli(self, *args: str, user: int | None = None, groups: str | None = None,
            timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """Run the roost command line against this roost (as root, or as uid `user`)."""
        prefix: list[str] = []
        if user is not None:
            prefix = ["setpriv", f"--reuid={user}", f"--regid={user}"]
            prefix += [f"--groups={groups}"] if groups else ["--clear-groups"]
        return subprocess.run([*prefix, *ROOST, *args, "--control", self.control],
                              capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)

    def raw(self) -> RawConnection:
        return RawConnection(self.control)


class RawConnection:
    """A bare control connection, for sending what the real client never would."""

    def __init__(self, address: str):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect("\0" + address[1:])
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self) -> dict[str, Any]:
        while b"\n" not in self.buffer:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("roost closed the connection")
            self.buffer += data
        line, _, self.buffer = self.buffer.partition(b"\n")
        value = json.loads(line)
        assert isinstance(value, dict)
        return value

    def closed_by_peer(self) -> bool:
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return True
                self.buffer += data
        except TimeoutError:
            return False

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def running(config: ConfigDir, mode: str, workdir: Path, **kwargs: Any) -> Iterator[Roost]:
    """A roost that answers on its control socket; torn down on exit."""
    roost = Roost(config, mode, workdir, **kwargs)
    try:
        roost.wait_ready()
        yield roost
    finally:
        roost.close()


# Each test so marked runs with roost as PID 1 of a namespace, and as a subreaper.
both_modes = pytest.mark.parametrize("mode", MODES)


@contextlib.contextmanager
def shared_directory() -> Iterator[Path]:
    """A directory every user can reach (pytest's own tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="roost-test-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        subprocess.run(["rm", "-rf", str(path)], check=False, timeout=30)


def wait_gone(pid: int, timeout: float = 10.0) -> None:
    wait_for(lambda: proc_state(pid) is None, timeout=timeout, what=f"pid {pid} to be gone")


def lines_of(path: Path) -> list[str]:
    try:
        return path.read_text().splitlines()
    except FileNotFoundError:
        return []


__all__ = ["MODES", "PYTHON", "ROOST", "ConfigDir", "RawConnection", "Roost", "both_modes",
           "host_pid_in", "lines_of", "running", "shared_directory", "status_field", "wait_gone",
           "zombies"]
