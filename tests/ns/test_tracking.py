"""Tracking every process of every service, by each means roost has, with real daemons.

Three environments, one per means:

* ``cgroup``: roost is PID 1 of PID, mount and cgroup namespaces, with a private cgroup2
  mounted on /sys/fs/cgroup inside; the namespace's cgroup root is a fresh cgroup this test
  makes (and removes) under the host's cgroup2 mount. The host's v1 hierarchies are never
  touched.
* ``proc-connector``: roost is a plain subreaper on the host, where the kernel delivers
  process events.
* ``lineage``: roost is PID 1 of a PID namespace only: no cgroup of its own, and the proc
  connector carries the host's PIDs there, which roost must notice and refuse.

The daemon below forks 1, 2 or 3 times before settling (each intermediate may linger, so
the launcher's exit comes before the dance is over), with or without setsid and a pid file,
keeps workers, and forks short-lived children all the time.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import support

UNIFIED = Path("/sys/fs/cgroup/unified")

DAEMON = r'''
import argparse, os, signal, sys, time

p = argparse.ArgumentParser()
p.add_argument("--forks", type=int, default=2)
p.add_argument("--setsid", action="store_true")
p.add_argument("--pid-file")
p.add_argument("--info")
p.add_argument("--workers", type=int, default=0)
p.add_argument("--wait", action="store_true")
p.add_argument("--linger", type=float, default=0.0)
p.add_argument("--late-children", action="store_true")
p.add_argument("--keeper", action="store_true")
p.add_argument("--storm", type=int, default=0)
p.add_argument("tag")
a = p.parse_args()

r = w = None
if a.wait:
    r, w = os.pipe()
for i in range(a.forks):
    pid = os.fork()
    if pid:
        if i == 0 and a.wait:
            os.close(w)
            os.read(r, 1)
        elif i > 0 and a.linger:
            time.sleep(a.linger)
        os._exit(0)
    if i == 0 and a.setsid:
        os.setsid()
if a.keeper:
    # Stays, reaps the daemon below it and outlives it.
    d = os.fork()
    if d:
        signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
        while True:
            try:
                os.waitpid(-1, 0)
            except ChildProcessError:
                time.sleep(60)
workers = []
for _ in range(a.workers):
    wp = os.fork()
    if wp == 0:
        while True:
            time.sleep(60)
    workers.append(wp)


def term(*_):
    for wp in workers:
        try:
            os.kill(wp, signal.SIGTERM)
        except OSError:
            pass
    os._exit(0)


signal.signal(signal.SIGTERM, term)
if a.keeper:
    # Reap the workers, so that a dead worker's PID is free at once.
    def reap(*_):
        try:
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        except ChildProcessError:
            pass
    signal.signal(signal.SIGCHLD, reap)


def storm(depth):
    # A bounded fork storm: every process forks two children, down to `depth`, and
    # ignores SIGTERM, so that only a kill of every member ends it.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    for _ in range(2):
        if depth and os.fork() == 0:
            storm(depth - 1)
    while True:
        time.sleep(60)


if a.storm:
    if os.fork() == 0:
        storm(a.storm)
if a.info:
    with open(a.info + ".tmp", "w") as f:
        f.write(" ".join(str(x) for x in [os.getpid(), *workers]) + "\n")
    os.rename(a.info + ".tmp", a.info)
if a.pid_file:
    with open(a.pid_file + ".tmp", "w") as f:
        f.write(f"{os.getpid()}\n")
    os.rename(a.pid_file + ".tmp", a.pid_file)
if w is not None:
    os.write(w, b"k")
    os.close(w)
while True:
    if a.late_children:
        c = os.fork()
        if c == 0:
            time.sleep(0.05)
            os._exit(0)
        time.sleep(0.15)
        os.waitpid(c, 0)
    else:
        time.sleep(60)
'''

_ids = itertools.count(1)


def call(addr: str, cmd: str, timeout: float = 30.0, **args: Any) -> Any:
    """One control request; the result, or AssertionError with roost's error."""
    msg = {"v": 1, "id": next(_ids), "cmd": cmd, "args": args}
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect("\0" + addr[1:])
        s.sendall(json.dumps(msg).encode() + b"\n")
        buf = b""
        while b"\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                raise AssertionError(f"roost closed the connection on {cmd}")
            buf += chunk
    reply = json.loads(buf.split(b"\n", 1)[0])
    if not reply.get("ok"):
        raise AssertionError(f"roost refused {cmd}: {reply.get('error')}")
    return reply.get("result")


def cgroup2_usable() -> str:
    """Why cgroup tests cannot run here ('' if they can)."""
    if not support.have_root() or shutil.which("unshare") is None:
        return "needs root and util-linux unshare"
    if not (UNIFIED / "cgroup.procs").exists():
        return f"no cgroup2 hierarchy at {UNIFIED}"
    return ""


def remove_cgroup_tree(path: Path, timeout: float = 10.0) -> None:
    """rmdir a cgroup and everything below it, waiting for dying processes to leave."""
    deadline = time.monotonic() + timeout
    while path.exists():
        dirs = sorted((p for p in path.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
        for d in [*dirs, path]:
            with contextlib.suppress(OSError):
                d.rmdir()
        if not path.exists() or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not path.exists(), f"cgroup {path} could not be removed"


def ns_inode(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def nspid_map(init: int) -> dict[int, int]:
    """namespace PID -> host PID for every process in the PID namespace of host PID `init`."""
    want = ns_inode(init)
    out: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or ns_inode(int(entry)) != want:
            continue
        try:
            with open(f"/proc/{entry}/status") as f:
                for line in f:
                    if line.startswith("NSpid:"):
                        out[int(line.split()[-1])] = int(entry)
        except OSError:
            continue
    return out


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def alive(pid: int) -> bool:
    state = support.proc_state(pid)
    return state is not None and state != "Z"


class Env:
    """roost running under one tracking means, with a config directory and a control socket."""

    def __init__(self, means: str, tmp: Path, *, force: bool = True,
                 extra_env: dict[str, str] | None = None):
        self.means = means
        self.tmp = tmp
        self.conf = tmp / "conf"
        self.conf.mkdir(exist_ok=True)
        self.logs = tmp / "logs"
        self.logs.mkdir(exist_ok=True)
        self.addr = support.unique_control()
        self.marker = f"roost-trk-{uuid.uuid4().hex[:8]}"
        self.daemon = tmp / "forkd.py"
        self.daemon.write_text(DAEMON)
        self.force = force
        self.extra_env = extra_env or {}
        self.cgroup: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.ns: support.Namespace | None = None
        self.output = tmp / "roost.out"

    # -- configuration ---------------------------------------------------------------

    def service(self, name: str, lines: list[str]) -> None:
        (self.conf / f"{name}.toml").write_text("\n".join(lines) + "\n")

    def daemon_service(self, name: str, *args: str, pid_file: bool = False,
                       extra: list[str] | None = None) -> None:
        """A forking service running the test daemon with `args`."""
        argv = [support.PYTHON, str(self.daemon), *args, "--info", str(self.tmp / f"{name}.info")]
        if pid_file:
            argv += ["--pid-file", str(self.tmp / f"{name}.pid")]
        argv.append(self.marker)
        lines = ["command = " + json.dumps(argv), 'type = "forking"', 'restart = "always"',
                 "restart_delay = 0.1", "start_timeout = 20", "stop_timeout = 5"]
        if pid_file:
            lines.append(f'pid_file = "{self.tmp / f"{name}.pid"}"')
        self.service(name, lines + (extra or []))

    def info(self, name: str) -> list[int]:
        path = self.tmp / f"{name}.info"
        return [int(x) for x in path.read_text().split()] if path.exists() else []

    # -- life cycle ------------------------------------------------------------------

    def start(self) -> Env:
        env = dict(os.environ, **self.extra_env)
        env.pop("ROOST_CGROUP", None)
        env.pop("ROOST_TRACKING", None)
        if self.force:
            env["ROOST_TRACKING"] = self.means
        roost = [*support.ROOST, "up", "-c", str(self.conf), "--control", self.addr,
                 "--log-dir", str(self.logs), "-v"]
        out = self.output.open("wb")
        if self.means == "proc-connector":
            if self.force:
                env["ROOST_CGROUP"] = "off"
            self.proc = subprocess.Popen(roost, env=env, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        elif self.means == "cgroup":
            self.cgroup = UNIFIED / f"roost-test-{uuid.uuid4().hex[:10]}"
            self.cgroup.mkdir()
            procs = str(self.cgroup / "cgroup.procs")

            def enter() -> None:
                with open(procs, "w") as f:
                    f.write("0")

            inner = ["sh", "-c", 'mount -t cgroup2 none /sys/fs/cgroup && exec "$@"', "sh",
                     *roost]
            self.ns = support.Namespace(inner, extra_unshare=["--cgroup", "--mount"], env=env,
                                        stdout=out, stderr=subprocess.STDOUT, preexec_fn=enter)
        else:
            self.ns = support.Namespace(roost, env=env, stdout=out, stderr=subprocess.STDOUT)
        out.close()
        support.wait_for(self._answers, timeout=20, what="roost's control socket")
        return self

    def _answers(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"roost exited early:\n{self.log()}")
        if self.ns is not None and self.ns.proc.poll() is not None:
            raise AssertionError(f"roost exited early:\n{self.log()}")
        try:
            call(self.addr, "ping", timeout=2)
        except (OSError, AssertionError):
            return False
        return True

    def log(self) -> str:
        try:
            return self.output.read_text(errors="replace")[-6000:]
        except OSError:
            return ""

    def close(self) -> None:
        with contextlib.suppress(OSError, AssertionError):
            call(self.addr, "shutdown", timeout=5)
        if self.proc is not None:
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pass
            for pid in reversed(support.descendants(self.proc.pid)):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                self.proc.kill()
            self.proc.wait(timeout=10)
        if self.ns is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.ns.proc.wait(timeout=20)
            self.ns.kill()
        # Nothing the daemons started may outlive the test.
        for entry in os.listdir("/proc"):
            if entry.isdigit() and self.marker in cmdline(int(entry)):
                with contextlib.suppress(OSError):
                    os.kill(int(entry), signal.SIGKILL)
        if self.cgroup is not None:
            remove_cgroup_tree(self.cgroup)

    # -- looking inside --------------------------------------------------------------

    def status(self, *names: str) -> dict[str, dict[str, Any]]:
        return {r["name"]: r for r in call(self.addr, "status", services=list(names))}

    def tree(self, *names: str) -> dict[str, Any]:
        return call(self.addr, "tree", services=list(names))

    def wait_state(self, name: str, state: str, timeout: float = 20.0,
                   other_than: int | None = None) -> dict[str, Any]:
        def ready() -> dict[str, Any] | None:
            r = self.status(name)[name]
            if r["state"] == state and (other_than is None or r["pid"] not in (None, other_than)):
                return r
            return None

        try:
            return support.wait_for(ready, timeout=timeout, what=f"{name} {state}")  # type: ignore[return-value]
        except AssertionError:
            raise AssertionError(f"{name} not {state}: {self.status(name)[name]}\n"
                                 f"{self.log()}") from None

    def host_pid(self, pid: int) -> int:
        """The host PID of a PID as roost sees it."""
        if self.ns is None:
            return pid
        return nspid_map(self.ns.init_pid)[pid]

    def visible(self) -> dict[int, int]:
        """namespace PID -> host PID of every process under roost (roost included)."""
        if self.ns is not None:
            return nspid_map(self.ns.init_pid)
        assert self.proc is not None
        return {p: p for p in [self.proc.pid, *support.descendants(self.proc.pid)]}

    def marked(self) -> list[int]:
        """Host PIDs of every live process running the test daemon."""
        return [int(e) for e in os.listdir("/proc")
                if e.isdigit() and self.marker in cmdline(int(e)) and alive(int(e))]

    def run_inside(self, script: str, timeout: float = 10.0) -> str:
        """Run a shell script in roost's PID and mount namespaces (or on the host)."""
        argv = ["sh", "-c", script]
        if self.ns is not None:
            argv = ["nsenter", "-t", str(self.ns.init_pid), "-p", "-m", "--", *argv]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              check=True).stdout


@contextlib.contextmanager
def roost_env(means: str, tmp: Path, **kw: Any) -> Iterator[Env]:
    why = cgroup2_usable() if means == "cgroup" else ""
    if means != "proc-connector":
        support.require_unshare()
    if why:
        pytest.skip(f"SKIPPED: cgroup tracking tests: {why}")
    env = Env(means, tmp, **kw)
    before = set(os.listdir(UNIFIED)) if UNIFIED.is_dir() else set()
    try:
        yield env
    finally:
        env.close()
        # roost must never have made anything in the host's own cgroup2 root.
        after = set(os.listdir(UNIFIED)) if UNIFIED.is_dir() else set()
        stray = {n for n in after - before if not n.startswith("roost-test-")}
        for name in stray:
            with contextlib.suppress(OSError):
                (UNIFIED / name).rmdir()
        assert not stray, f"roost made {stray} in the host's {UNIFIED}"


MEANS = ["cgroup", "proc-connector", "lineage"]

# (forks, setsid, pid file): every shape of the classic daemon dance.
SHAPES = [(f, s, p) for f in (1, 2, 3) for s in (False, True) for p in (False, True)]


def shape_name(forks: int, setsid: bool, pid_file: bool) -> str:
    return f"f{forks}{'-setsid' if setsid else ''}{'-pidfile' if pid_file else ''}"


@pytest.mark.timeout(150)
@pytest.mark.parametrize("means", MEANS)
def test_daemons_that_fork_away_are_tracked_restarted_and_stopped(means: str, tmp_path: Path
                                                                  ) -> None:
    with roost_env(means, tmp_path) as env:
        names = []
        for forks, setsid, pid_file in SHAPES:
            name = shape_name(forks, setsid, pid_file)
            args = ["--forks", str(forks), "--workers", "2", "--late-children"]
            if setsid:
                args.append("--setsid")
            if forks > 1:
                # Intermediates outlive the launcher: its exit comes before the dance ends.
                args += ["--linger", "0.15"]
            # The lineage floor cannot tell concurrent forking starts apart: one at a time.
            env.daemon_service(name, *args, pid_file=pid_file,
                               extra=["autostart = false"] if means == "lineage" else [])
            names.append(name)
        env.start()
        if means == "lineage":
            for name in names:
                call(env.addr, "start", services=[name], timeout=60)
        for name in names:
            r = env.wait_state(name, "up")
            assert r["tracking"] == means, r
        # The daemon is the main process: not the launcher, not an intermediate.
        mains = {}
        for name in names:
            daemon, *workers = support.wait_for(lambda n=name: env.info(n), what=f"{name} info")  # type: ignore[misc]
            support.wait_for(lambda n=name, d=daemon: env.status(n)[n]["pid"] == d, timeout=10,
                             what=f"{name}'s main to be the daemon {daemon}")
            mains[name] = (daemon, workers)
        # Short-lived children come and go; none of that is the daemon's death.
        time.sleep(1.0)
        tree = env.tree()
        by_service = {e["service"]: e for e in tree["services"]}
        for name, (daemon, workers) in mains.items():
            r = env.status(name)[name]
            assert (r["state"], r["pid"], r["restarts"]) == ("up", daemon, 0), r
            entry = by_service[name]
            pids = {p["pid"] for p in entry["processes"]}
            assert {daemon, *workers} <= pids, (name, entry)
            assert entry["tracking"] == means
            assert [p["pid"] for p in entry["processes"] if p["main"]] == [daemon]
            for p in entry["processes"]:
                # A short-lived child may be exiting as the tree is read: no command line.
                assert env.marker in p["command"] or p["command"].startswith("["), p
            if means == "cgroup":
                assert entry["cgroup"].endswith(f"/{name}.service"), entry
        # Daemons came home to roost: listed as orphans with the service they came from.
        orphans = {o["pid"]: o["service"] for o in tree["orphans"]}
        for name, (daemon, _workers) in mains.items():
            assert orphans.get(daemon) == name, (name, tree["orphans"])

        # Kill each real daemon: the service restarts, and the old workers are stopped.
        for name, (daemon, workers) in mains.items():
            old_workers = [env.host_pid(w) for w in workers]
            os.kill(env.host_pid(daemon), signal.SIGKILL)
            r = env.wait_state(name, "up", other_than=daemon, timeout=30)
            assert r["restarts"] >= 1, r
            support.wait_for(lambda ws=old_workers: not any(alive(w) for w in ws), timeout=10,
                             what=f"the workers of {name}'s dead daemon to be stopped")

        # Stop everything: nothing of any service remains.
        call(env.addr, "stop", services=names, timeout=60)
        for name in names:
            assert env.status(name)[name]["state"] == "down"
        support.wait_for(lambda: not env.marked(), timeout=10,
                         what="every daemon process to be gone")
        if env.cgroup is not None:
            for name in names:
                procs = (env.cgroup / f"{name}.service" / "cgroup.procs").read_text().split()
                assert procs == [], (name, procs)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("means", MEANS)
def test_the_means_is_detected_not_assumed(means: str, tmp_path: Path) -> None:
    # No forcing: roost finds the best means of each environment by itself (in the PID
    # namespace, by seeing that the proc connector's events carry foreign PIDs).
    with roost_env(means, tmp_path, force=False) as env:
        env.service("sleeper", ['command = ["sleep", "300"]'])
        env.start()
        r = env.wait_state("sleeper", "up")
        assert r["tracking"] == means, (r, env.log())


@pytest.mark.timeout(90)
@pytest.mark.parametrize("means", MEANS)
def test_stop_reaches_setsid_grandchildren_and_a_fork_storm(means: str, tmp_path: Path) -> None:
    with roost_env(means, tmp_path) as env:
        # A simple service whose main process spawns a setsid'd daemon and a fork storm.
        env.service("storm", ["command = " + json.dumps(
            [support.PYTHON, str(env.daemon), "--forks", "0", "--storm", "6",
             "--info", str(tmp_path / "storm.info"), env.marker]), 'restart = "never"',
            "stop_timeout = 2"])
        env.service("escaper", [
            "command = " + json.dumps(["sh", "-c", "setsid sh -c 'sleep 300 & exec sleep 301' "
                                       "& exec sleep 302"]),
            'restart = "never"', "stop_timeout = 2"])
        env.start()
        env.wait_state("storm", "up")
        env.wait_state("escaper", "up")
        # 2^7 - 1 storm processes, plus the main one.
        support.wait_for(lambda: len(env.tree("storm")["services"][0]["processes"]) >= 127,
                         timeout=30, what="the storm to grow")
        support.wait_for(lambda: len(env.tree("escaper")["services"][0]["processes"]) == 3,
                         timeout=10, what="the escaper's setsid'd grandchildren")
        host = env.visible()
        members = [host[p["pid"]] for name in ("storm", "escaper")
                   for p in env.tree(name)["services"][0]["processes"]]
        call(env.addr, "stop", services=["storm", "escaper"], timeout=60)
        assert env.status("storm")["storm"]["state"] == "down"
        assert env.status("escaper")["escaper"]["state"] == "down"
        assert not [p for p in members if alive(p)]
        assert all(e["processes"] == [] for e in env.tree("storm", "escaper")["services"])
        support.wait_for(lambda: not env.marked(), timeout=10, what="nothing left")


@pytest.mark.timeout(90)
@pytest.mark.parametrize("means", ["cgroup", "lineage"])
def test_a_recycled_pid_is_never_signalled(means: str, tmp_path: Path) -> None:
    # Inside a PID namespace roost owns, force the PID of a dead member onto a stranger
    # while roost is frozen, then ask roost to signal and to stop the service.
    with roost_env(means, tmp_path) as env:
        env.daemon_service("kept", "--forks", "1", "--keeper", "--workers", "1",
                           pid_file=True)
        env.start()
        env.wait_state("kept", "up")
        daemon, worker = support.wait_for(lambda: env.info("kept"), what="info")  # type: ignore[misc]
        support.wait_for(lambda: env.status("kept")["kept"]["pid"] == daemon, timeout=10,
                         what="the daemon as main")
        roost = env.ns.init_pid if env.ns is not None else 0
        strangers = []
        os.kill(roost, signal.SIGSTOP)
        try:
            # The worker's and the daemon's PIDs are freed by their parents (the daemon
            # and the keeper), then taken by strangers outside the service.
            for victim in (worker, daemon):
                os.kill(env.host_pid(victim), signal.SIGKILL)
                support.wait_for(lambda v=victim: v not in env.visible(), timeout=10,
                                 what=f"{victim} reaped")
                for _ in range(20):
                    got = env.run_inside(
                        f"echo {victim - 1} > /proc/sys/kernel/ns_last_pid; "
                        f"setsid sleep 300 </dev/null >/dev/null 2>&1 & echo $!").strip()
                    if int(got) == victim:
                        break
                    env.run_inside(f"kill -9 {got}")
                else:
                    pytest.fail(f"could not recycle pid {victim}")
                strangers.append(env.host_pid(victim))
        finally:
            os.kill(roost, signal.SIGCONT)
        # roost may signal its service; the strangers holding recycled PIDs stay untouched.
        with contextlib.suppress(AssertionError):
            call(env.addr, "signal", services=["kept"], signal="SIGTERM")
        call(env.addr, "stop", services=["kept"], timeout=30)
        assert env.status("kept")["kept"]["state"] == "down"
        time.sleep(0.3)
        for pid in strangers:
            assert alive(pid), f"the stranger at recycled pid {pid} was signalled"
            os.kill(pid, signal.SIGKILL)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("means", MEANS)
def test_a_pid_file_naming_a_process_outside_the_service_is_refused(means: str,
                                                                    tmp_path: Path) -> None:
    with roost_env(means, tmp_path) as env:
        # The launcher writes roost's own PID into the pid file, then exits 0.
        pid_file = tmp_path / "liar.pid"
        env.service("liar", [
            "command = " + json.dumps(["sh", "-c", f"sleep 30 & echo $PPID > {pid_file}"]),
            'type = "forking"', f'pid_file = "{pid_file}"', 'restart = "never"'])
        env.start()
        r = env.wait_state("liar", "failed")
        assert "not a process of liar: refused" in r["last_exit"], r
        assert env.tree("liar")["services"][0]["processes"] == []


@pytest.mark.timeout(60)
@pytest.mark.parametrize("means", MEANS)
def test_a_simple_service_is_down_only_when_its_last_process_is_gone(means: str,
                                                                     tmp_path: Path) -> None:
    with roost_env(means, tmp_path) as env:
        # The main process exits 0 soon, leaving a setsid'd child that ignores SIGTERM.
        code = ("import os, signal, time\n"
                "if os.fork() == 0:\n"
                "    os.setsid()\n"
                "    signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                "    time.sleep(300)\n"
                "time.sleep(0.5)\n")
        env.service("parent", ["command = " + json.dumps([support.PYTHON, "-c", code,
                                                           env.marker]),
                               'restart = "never"', "stop_timeout = 1"])
        env.start()
        env.wait_state("parent", "up")
        support.wait_for(lambda: len(env.marked()) == 2, timeout=10, what="parent and child")
        left = env.wait_state("parent", "stopping", timeout=10)
        assert len(env.marked()) == 1, left
        # The leftover ignores TERM: roost kills it at the stop timeout, then it is down.
        r = env.wait_state("parent", "down", timeout=20)
        assert r["last_exit"] == "exited 0", r
        assert not env.marked()


@pytest.mark.timeout(60)
def test_limits_where_the_controllers_exist(tmp_path: Path) -> None:
    with roost_env("cgroup", tmp_path) as env:
        code = "import os, time\nwhile True:\n    os.fork()\n    time.sleep(0.05)\n"
        env.service("limited", ["command = " + json.dumps([support.PYTHON, "-c", code]),
                                'memory_max = "64M"', "pids_max = 12", 'restart = "never"',
                                "stop_timeout = 1"])
        env.start()
        env.wait_state("limited", "up")
        offered = (env.cgroup / "cgroup.controllers").read_text().split()  # type: ignore[operator]
        if not {"memory", "pids"} <= set(offered):
            # roost says why the limits are not applied, and runs the service anyway.
            support.wait_for(lambda: "memory.max = 67108864 not applied" in env.log(),
                             timeout=10, what="roost's warning about memory_max")
            assert "pids.max = 12 not applied" in env.log()
            call(env.addr, "stop", services=["limited"], timeout=30)
            pytest.skip(f"SKIPPED: this cgroup2 hierarchy offers {offered or 'no controller'}: "
                        "memory.max and pids.max cannot be enforced here; they are enforced "
                        "in tests/vm/test_tracking_limits.py")
        if "cannot enable" in env.log():
            pytest.skip("SKIPPED: roost could not enable the controllers in the namespace "
                        f"(unshare's own process shares its cgroup): {env.log()[-300:]}")
        # Controllers here: the storm never passes pids.max.
        time.sleep(2)
        procs = (env.cgroup / "limited.service" / "cgroup.procs").read_text().split()  # type: ignore[operator]
        assert 0 < len(procs) <= 12, procs
        call(env.addr, "stop", services=["limited"], timeout=30)


@pytest.mark.timeout(60)
def test_tree_shows_orphans_of_unknown_origin_under_the_lineage_floor(tmp_path: Path) -> None:
    # An escapee (fork, setsid, fork, the middle exits) of a live main process comes home
    # to roost with no visible link: `roost tree` lists it as an orphan of unknown origin,
    # with its command line. When the main process exits, the escapee is claimed for the
    # service (it came home after the service started) and stopped with it.
    with roost_env("lineage", tmp_path) as env:
        # The middle process is reaped at once: no zombie's session links the escapee.
        reaped = tmp_path / "middle-reaped"
        code = ("import os, sys, time\n"
                "middle = os.fork()\n"
                "if middle == 0:\n"
                "    os.setsid()\n"
                "    if os.fork() == 0:\n"
                "        time.sleep(300)\n"
                "    os._exit(0)\n"
                "os.waitpid(middle, 0)\n"
                f"open({str(reaped)!r}, 'w').close()\n"
                "time.sleep(300)\n")
        env.service("escaper", ["command = " + json.dumps([support.PYTHON, "-c", code,
                                                           env.marker]),
                                'restart = "never"', "stop_timeout = 2"])
        env.start()
        env.wait_state("escaper", "up")
        support.wait_for(reaped.exists, timeout=10, what="the middle process reaped")
        support.wait_for(lambda: len(env.marked()) == 2, timeout=10, what="main and escapee")

        def unknown() -> list[dict[str, Any]]:
            return [o for o in env.tree()["orphans"] if o["service"] is None]

        orphans = support.wait_for(unknown, timeout=10, what="an orphan of unknown origin")
        assert len(orphans) == 1 and env.marker in orphans[0]["command"], orphans  # type: ignore[index, arg-type]
        call(env.addr, "stop", services=["escaper"], timeout=30)
        assert env.status("escaper")["escaper"]["state"] == "down"
        support.wait_for(lambda: not env.marked(), timeout=10, what="the escapee stopped too")
