"""roost's own readiness: $NOTIFY_SOCKET, --ready-fd, --ready-file and `status --check`.

Real processes throughout: a roost supervised by another roost as a `type = "notify"`
service, a datagram socket of the test's own given as $NOTIFY_SOCKET, a shell reading
the --ready-fd pipe, the ready file watched from outside, and the probe run as root
and as uid 65534.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.ns.supervisor_kit import (
    PYTHON,
    ROOST,
    ConfigDir,
    both_modes,
    running,
    shared_directory,
)
from tests.support import Namespace, run_ns, started, unique_control, wait_for

DEADLINE = 60.0
NOBODY = 65534

# A notify service that says READY=1 only once the file argv[1] exists; on TERM it
# takes argv[2] seconds to go.
GATED = r"""
import os, signal, socket, sys, time
gate, linger = sys.argv[1], float(sys.argv[2])
def term(signum, frame):
    time.sleep(linger)
    sys.exit(0)
signal.signal(signal.SIGTERM, term)
while not os.path.exists(gate):
    time.sleep(0.02)
address = os.environ["NOTIFY_SOCKET"]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.sendto(b"READY=1", "\0" + address[1:] if address.startswith("@") else address)
while True:
    time.sleep(60)
"""


def gated(config: ConfigDir, name: str, gate: Path, linger: float = 0.0, **keys: object) -> None:
    config.service(name, type="notify", start_timeout=0,
                   command=[*config.python("gated", GATED), str(gate), str(linger)], **keys)


def sleeper(config: ConfigDir, name: str, **keys: object) -> None:
    config.service(name, command=["sleep", "1000"], **keys)


class Datagrams:
    """A datagram socket of the test's own, given to roost as its $NOTIFY_SOCKET."""

    def __init__(self, address: str):
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.sock.settimeout(0.2)
        self.seen: list[dict[str, str]] = []

    def collect(self) -> list[dict[str, str]]:
        while True:
            try:
                data = self.sock.recv(4096)
            except (TimeoutError, BlockingIOError):
                return self.seen
            fields = dict(line.split("=", 1) for line in data.decode().split("\n") if line)
            self.seen.append(fields)

    def wait(self, key: str, value: str | None = None, after: int = 0) -> dict[str, str]:
        def found() -> dict[str, str] | None:
            for fields in self.collect()[after:]:
                if key in fields and (value is None or fields[key] == value):
                    return fields
            return None

        got = wait_for(found, timeout=DEADLINE, what=f"{key}={value} on the notify socket")
        assert isinstance(got, dict)
        return got

    def close(self) -> None:
        self.sock.close()


@both_modes
def test_roost_under_roost_is_up_only_once_its_services_are(tmp_path: Path, mode: str) -> None:
    inner = ConfigDir(tmp_path / "inner")
    gate = tmp_path / "gate"
    gated(inner, "slow", gate, linger=1.5)
    sleeper(inner, "plain")
    inner_control = unique_control()
    outer = ConfigDir(tmp_path / "outer")
    outer.service("inner", type="notify", start_timeout=0, stop_timeout=30,
                  command=[*ROOST, "up", "-c", str(inner.path), "--control", inner_control])
    with running(outer, mode, tmp_path) as roost:
        roost.wait_state("inner", "starting")
        # The inner roost runs and answers, its plain service is up, the gated one not:
        # the outer roost must not see it up yet.
        wait_for(lambda: subprocess.run([*ROOST, "status", "plain", "--control", inner_control],
                                        capture_output=True, timeout=30).returncode == 0,
                 timeout=DEADLINE, what="the inner roost's plain service to be up")
        for _ in range(10):
            assert roost.status("inner")["state"] == "starting"
            time.sleep(0.05)
        gate.touch()
        record = roost.wait_state("inner", "up", timeout=DEADLINE)
        print(f"outer sees inner: {record}")
        assert record["status"] == "2 up", record
        # The inner roost's STOPPING=1 reaches the outer one while its services stop.
        assert roost.cli("stop", "--no-wait", "inner").returncode == 0
        phases = []

        def stopping_seen() -> bool:
            record = roost.status("inner")
            phases.append((record["state"], record.get("phase"), record["status"]))
            return record.get("phase") == "stopping" and record["status"] == "stopping"

        wait_for(stopping_seen, timeout=DEADLINE, what="STOPPING=1 from the inner roost")
        print(f"outer sees while inner stops: {phases[-1]}")
        roost.wait_state("inner", "down", timeout=DEADLINE)


@pytest.mark.parametrize("where", ["abstract", "path"])
def test_notify_socket_hears_ready_status_reload_and_stopping(tmp_path: Path,
                                                              where: str) -> None:
    config = ConfigDir(tmp_path / "conf")
    gate = tmp_path / "gate"
    gated(config, "slow", gate)
    sleeper(config, "plain")
    seen_env = tmp_path / "env"
    config.service("env", type="oneshot",
                   command=["sh", "-c", f'echo "${{NOTIFY_SOCKET-unset}}" > {seen_env}'])
    address = f"@roost-test-notify-{os.getpid()}" if where == "abstract" \
        else str(tmp_path / "notify")
    listener = Datagrams(address)
    try:
        with running(config, "subreaper", tmp_path,
                     env={**os.environ, "NOTIFY_SOCKET": address}) as roost:
            roost.wait_state("plain", "up")
            roost.wait_state("env", "done")
            time.sleep(0.5)
            assert not [f for f in listener.collect() if "READY" in f], listener.seen
            gate.touch()
            ready = listener.wait("READY", "1")
            assert ready["STATUS"] == "2 up, 1 done", listener.seen
            before = len(listener.seen)
            assert roost.cli("reload").returncode == 0
            reloading = listener.wait("RELOADING", "1", after=before)
            assert int(reloading["MONOTONIC_USEC"]) <= time.monotonic_ns() // 1000
            index = listener.seen.index(reloading)
            listener.wait("READY", "1", after=index + 1)
            roost.signal(15)
            listener.wait("STOPPING", "1")
            assert roost.wait_exit() == 0
        print(f"datagrams: {listener.seen}")
        assert seen_env.read_text().strip() == "unset"
    finally:
        listener.close()


def test_ready_fd_wakes_a_shell_once_every_service_is_up(tmp_path: Path) -> None:
    config = ConfigDir(tmp_path / "conf")
    gate = tmp_path / "gate"
    gated(config, "slow", gate)
    sleeper(config, "plain")
    control = unique_control()
    roost = " ".join(ROOST)
    script = (f'mkfifo {tmp_path}/pipe\n'
              f'{roost} up -c {config.path} --control {control} --ready-fd 3 '
              f'3>{tmp_path}/pipe >{tmp_path}/roost.out 2>&1 &\n'
              f'read -r line < {tmp_path}/pipe; echo "read: [$line] $?"\n'
              f'{roost} status --check --control {control}; echo "check: $?"\n'
              f'{roost} shutdown --control {control} >/dev/null; wait; echo "roost: $?"\n')
    with started(["sh", "-c", script], stdout=subprocess.PIPE, text=True) as shell:
        wait_for(lambda: (tmp_path / "roost.out").exists()
                 and "slow: starting" in (tmp_path / "roost.out").read_text(),
                 timeout=DEADLINE, what="roost to start the gated service")
        time.sleep(0.5)
        assert shell.poll() is None, "the shell read the pipe before roost was ready"
        gate.touch()
        out, _ = shell.communicate(timeout=DEADLINE)
    print(out)
    assert out.splitlines() == ["read: [] 0", "check: 0", "roost: 0"], \
        out + (tmp_path / "roost.out").read_text()


@both_modes
def test_ready_file_follows_every_wanted_service(tmp_path: Path, mode: str) -> None:
    config = ConfigDir(tmp_path / "conf")
    sleeper(config, "web", restart="always", restart_delay=1)
    sleeper(config, "db")
    config.service("job", command=["false"], autostart=False, restart="never")
    with shared_directory() as shared:
        path = shared / "ready"
        with running(config, mode, tmp_path, args=("--ready-file", str(path))) as roost:
            wait_for(path.exists, timeout=DEADLINE, what="the ready file")
            assert path.read_text() == "2 up, 1 down\n"
            for user in (None, NOBODY):
                ran = roost.cli("status", "--check", user=user)
                assert (ran.returncode, ran.stdout, ran.stderr) == (0, "", ""), ran
            # Stopped from outside: web backs off, the file goes; restarted, it is back.
            pid = roost.host_pid(roost.status("web")["pid"])
            os.kill(pid, 9)
            wait_for(lambda: not path.exists(), timeout=DEADLINE, what="the file removed")
            for user in (None, NOBODY):
                ran = roost.cli("status", "--check", user=user)
                if ran.returncode == 0:  # restarted already: the file must say so too
                    assert path.exists()
                    continue
                assert ran.returncode == 3 and ran.stdout.startswith("not ready: web "), ran
            roost.wait_state("web", "up", timeout=DEADLINE)
            wait_for(path.exists, timeout=DEADLINE, what="the file made again")
            # A wanted service that fails: not ready, until nobody wants it any more.
            roost.cli("start", "job")  # up at exec, failed once `false` exits
            roost.wait_state("job", "failed")
            wait_for(lambda: not path.exists(), timeout=DEADLINE, what="the file removed")
            for user in (None, NOBODY):
                ran = roost.cli("status", "--check", user=user)
                assert ran.returncode == 3, ran
                assert ran.stdout == "not ready: job failed (2 up, 1 failed)\n", ran
                # Another user cannot plant the file while roost says no.
                if user == NOBODY:
                    planted = subprocess.run(
                        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                         "touch", str(path)], capture_output=True, text=True, timeout=30)
                    assert planted.returncode != 0 and not path.exists(), planted
            assert roost.cli("stop", "job").returncode == 0
            wait_for(path.exists, timeout=DEADLINE, what="the file made again")
            assert roost.cli("status", "--check").returncode == 0
            roost.signal(15)
            assert roost.wait_exit() == 0
            assert not path.exists()


def test_bad_ready_targets_are_one_line_and_exit_2(tmp_path: Path) -> None:
    config = ConfigDir(tmp_path / "conf")
    sleeper(config, "web")
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chown(theirs, NOBODY, NOBODY)
    cases = [
        (["--ready-fd", "9"], "--ready-fd 9: not an open descriptor"),
        (["--ready-fd", "x"], "--ready-fd: not a descriptor number: 'x'"),
        (["--ready-fd", "1"], "--ready-fd 1: 0, 1 and 2 are roost's stdin, stdout and stderr"),
        (["--ready-file", "/tmp/roost-ready"], "/tmp has mode 1777: another user could "
         "create the file"),
        (["--ready-file", str(theirs / "ready")], f"{theirs} is owned by uid {NOBODY}"),
        (["--ready-file", str(tmp_path / "missing" / "ready")], "No such file or directory"),
    ]
    for args, message in cases:
        for role in (["up", "-c", str(config.path), "--control", unique_control()],
                     ["run"]):
            argv = [*ROOST, *role, *args, *(["--", "true"] if role == ["run"] else [])]
            ran = subprocess.run(argv, capture_output=True, text=True, timeout=30,
                                 stdin=subprocess.DEVNULL)
            lines = ran.stderr.splitlines()
            assert ran.returncode == 2 and len(lines) == 1 and message in lines[0], (argv, ran)
            assert ran.stdout == "", ran
    print("refused:", *(case[0] for case in cases))


# The main command: say whether the ready file exists while it runs, then wait for TERM.
WATCHER = r"""
import os, signal, sys, time
path, out = sys.argv[1], sys.argv[2]
with open(out, "w") as f:
    f.write(f"running, ready file: {os.path.exists(path)}\n")
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
time.sleep(60)
"""


def test_run_ready_file_exists_while_the_main_command_runs(tmp_path: Path) -> None:
    config = ConfigDir(tmp_path / "conf")
    sleeper(config, "db")
    gate = tmp_path / "gate"
    gated(config, "cache", gate)
    out = tmp_path / "main.out"
    with shared_directory() as shared:
        path = shared / "ready"
        for sidecars in ([], ["-c", str(config.path), "--after", "cache",
                              "--control", unique_control()]):
            out.unlink(missing_ok=True)
            gate.unlink(missing_ok=True)
            argv = [*ROOST, "run", "--ready-file", str(path), *sidecars, "--",
                    PYTHON, "-c", WATCHER, str(path), str(out)]
            with Namespace(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as ns:
                if sidecars:
                    time.sleep(0.5)
                    assert not path.exists() and not out.exists(), "ready before --after"
                    gate.touch()
                wait_for(out.exists, timeout=DEADLINE, what="the main command to start")
                wait_for(path.exists, timeout=DEADLINE, what="the ready file")
                assert path.read_text().startswith("running: pid ")
                ns.signal(15)
                assert ns.wait(timeout=DEADLINE) == 0
            assert not path.exists()
            print(sidecars[:1], out.read_text().strip())


def test_run_with_sidecars_says_ready_and_keeps_notify_socket_from_main(tmp_path: Path) -> None:
    config = ConfigDir(tmp_path / "conf")
    sleeper(config, "db")
    listener = Datagrams(f"@roost-test-run-{os.getpid()}")
    try:
        ran = run_ns([*ROOST, "run", "-c", str(config.path), "--after", "db",
                      "--control", unique_control(), "--",
                      "sh", "-c", 'sleep 0.5; echo "main sees ${NOTIFY_SOCKET-unset}"'],
                     timeout=DEADLINE, env={**os.environ, "NOTIFY_SOCKET": listener.address})
        assert ran.rc == 0, ran
        assert "main sees unset" in ran.out, ran
        seen = listener.collect()
        print(seen)
        assert seen[0] == {"READY": "1", "STATUS": "1 up"}, seen
        assert {"STOPPING": "1", "STATUS": "stopping"} in seen, seen
    finally:
        listener.close()


def test_the_announcer_loads_only_when_asked(tmp_path: Path) -> None:
    config = ConfigDir(tmp_path / "conf")
    sleeper(config, "web")
    probe = ("import sys, runpy; sys.argv = ['roost', 'up', '-c', sys.argv[1], '--control', "
             "sys.argv[2]] + sys.argv[3:]\n"
             "import roost.up as up, threading, os\n"
             "def report():\n"
             "    mods = sorted(m for m in sys.modules if m in ('roost.supervise.announce', "
             "'roost.kernel.ready'))\n"
             "    print(mods, flush=True); os._exit(0)\n"
             "threading.Timer(3, report).start()\n"
             "from roost.cli import main; main(sys.argv[1:])\n")
    results = {}
    with shared_directory() as shared:
        for name, extra in (("plain", []), ("ready file", ["--ready-file", str(shared / "r")])):
            ran = subprocess.run([PYTHON, "-c", probe, str(config.path), unique_control(), *extra],
                                 capture_output=True, text=True, timeout=60)
            results[name] = ran.stdout.strip().splitlines()[-1] if ran.stdout.strip() else ran
    print(results)
    assert results["plain"] == "[]", results
    assert results["ready file"] == "['roost.kernel.ready', 'roost.supervise.announce']", results


def test_roost_init_under_a_notify_manager_says_ready_then_stopping(tmp_path: Path) -> None:
    config = ConfigDir(tmp_path / "conf")
    gate = tmp_path / "gate"
    gated(config, "slow", gate)
    sleeper(config, "plain")
    # A path, not an abstract name: roost init runs in a network namespace of its own.
    listener = Datagrams(str(tmp_path / "notify"))
    log = tmp_path / "init.log"
    try:
        with open(log, "wb") as out, Namespace(
                [*ROOST, "init", "-c", str(config.path)], uts=True, extra_unshare=("--net",),
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd="/",
                env={**os.environ, "NOTIFY_SOCKET": listener.address}) as ns:
            wait_for(lambda: "slow: starting" in log.read_text(), timeout=DEADLINE,
                     what="roost init to start its services")
            time.sleep(0.5)
            assert listener.collect() == [], listener.seen
            gate.touch()
            assert listener.wait("READY", "1")["STATUS"] == "2 up", listener.seen
            ns.signal(signal.SIGUSR2)  # poweroff
            listener.wait("STOPPING", "1")
            ns.wait(timeout=DEADLINE)
        print(f"datagrams: {listener.seen}")
    finally:
        listener.close()


def test_an_unhealthy_service_takes_the_ready_file_away(tmp_path: Path) -> None:
    config = ConfigDir(tmp_path / "conf")
    flag = tmp_path / "healthy"
    flag.touch()
    sleeper(config, "api", restart="never",
            health={"command": ["test", "-e", str(flag)], "interval": 0.3, "timeout": 5,
                    "retries": 1})
    with shared_directory() as shared:
        path = shared / "ready"
        with running(config, "subreaper", tmp_path, args=("--ready-file", str(path))) as roost:
            wait_for(lambda: roost.status("api").get("health") == "healthy", timeout=DEADLINE,
                     what="api healthy")
            assert path.exists() and roost.cli("status", "--check").returncode == 0
            flag.unlink()
            wait_for(lambda: not path.exists(), timeout=DEADLINE, what="the file removed")
            ran = roost.cli("status", "--check")
            print(ran.stdout, roost.status("api"))
            assert ran.returncode == 3 and ran.stdout.startswith("not ready: api "), ran
