"""Readiness of daemons that speak no protocol (a file, a listening port, dinit's pipevar) and
health checks (a command, tcp, http) against real servers, made to fail and seen restarted.

Each test runs roost for real, as PID 1 of a PID namespace and as a subreaper where the
mode matters; every server is a real process (python3 -m http.server, or a small socket
server) that roost starts as a service.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.ns.supervisor_kit import (
    PYTHON,
    ConfigDir,
    both_modes,
    running,
    shared_directory,
)
from tests.support import proc_state, voluntary_switches, wait_for

pytestmark = pytest.mark.timeout(180)

NOBODY = 65534


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cmdlines() -> dict[int, str]:
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    found[int(entry)] = f.read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
    return found


def alive_with(marker: str) -> list[int]:
    """Processes (not zombies) whose command line holds `marker`."""
    return [pid for pid, line in cmdlines().items()
            if marker in line and proc_state(pid) not in (None, "Z")]


# -- readiness ---------------------------------------------------------------------------

LATE_FILE = """\
#!/bin/sh
sleep 1.5
echo "made $1"
: > "$1"
exec sleep 600
"""


@both_modes
def test_file_readiness_waits_for_the_daemon_to_write_its_file(tmp_path: Path,
                                                               mode: str) -> None:
    config = ConfigDir(tmp_path / "conf")
    flag = tmp_path / "db.ready"
    config.service("db", command=[config.script("late.sh", LATE_FILE), str(flag)],
                   ready=f"file:{flag}", start_timeout=30)
    config.service("web", command=["sleep", "600"], requires=["db"])
    with running(config, mode, tmp_path) as roost:
        assert roost.status("db")["state"] == "starting"
        assert roost.status("web")["reason"] == "waiting for db"
        roost.wait_state("db", "up")
        roost.wait_state("web", "up")
        out = roost.output()
        assert out.index("db | made") < out.index("db: up") < out.index("web: starting")


def test_a_file_another_user_made_is_not_readiness(tmp_path: Path) -> None:
    with shared_directory() as shared:
        shared.chmod(0o1777)  # as /tmp: anyone may create, nobody may replace another's
        flag = shared / "db.ready"
        config = ConfigDir(tmp_path / "conf")
        waiter = config.script("wait.sh", '#!/bin/sh\nwhile [ ! -e "$1.go" ]; do sleep 0.05; '
                               'done\n: > "$1"\nexec sleep 600\n')
        config.service("db", command=[waiter, str(flag)], ready=f"file:{flag}",
                       start_timeout=30)
        with running(config, "pid1", tmp_path) as roost:
            made = subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}",
                                   "--clear-groups", "touch", str(flag)],
                                  capture_output=True, text=True, timeout=10)
            assert made.returncode == 0, made
            time.sleep(2.5)  # more than two polls at the longest back-off
            assert roost.status("db")["state"] == "starting"
            # nobody cannot take the name over from the service's user either way round:
            os.unlink(flag)
            (shared / "db.ready.go").write_text("")
            roost.wait_state("db", "up")


DELAYED_HTTP = """\
#!/bin/sh
sleep "$2"
echo "listening on $1"
exec {python} -m http.server --bind 127.0.0.1 "$1"
"""


@both_modes
def test_tcp_readiness_waits_for_a_server_that_listens_late(tmp_path: Path, mode: str) -> None:
    config = ConfigDir(tmp_path / "conf")
    port = free_port()
    script = config.script("delayed.sh", DELAYED_HTTP.format(python=PYTHON))
    config.service("api", command=[script, str(port), "2"], ready=f"tcp:127.0.0.1:{port}",
                   start_timeout=30, working_directory=str(tmp_path))
    config.service("client", command=["sleep", "600"], requires=["api"])
    with running(config, mode, tmp_path) as roost:
        time.sleep(1)
        assert roost.status("api")["state"] == "starting"
        up = roost.wait_state("api", "up", timeout=20)
        # Ready means the port answers: a connect from here succeeds.
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        roost.wait_state("client", "up")
        out = roost.output()
        assert out.index(f"listening on {port}") < out.index("api: up")
        print(f"api up after {up['since']}s in the state")


def test_tcp_readiness_is_bounded_by_the_start_timeout(tmp_path: Path) -> None:
    config = ConfigDir(tmp_path / "conf")
    config.service("mute", command=["sleep", "600"], ready=f"tcp:127.0.0.1:{free_port()}",
                   start_timeout=1.5, restart="never")
    with running(config, "pid1", tmp_path) as roost:
        record = roost.wait_state("mute", "failed", timeout=20)
        assert record["last_exit"] == "not ready within 1.5s"


PIPEVAR = """\
#!/bin/sh
echo "fd is $MY_READY"
sleep 1
echo ready >&"$MY_READY"
exec sleep 600
"""


@both_modes
def test_pipevar_readiness_from_a_shell(tmp_path: Path, mode: str) -> None:
    config = ConfigDir(tmp_path / "conf")
    config.service("sh", command=[config.script("pv.sh", PIPEVAR)], ready="pipevar:MY_READY",
                   start_timeout=30)
    config.service("after", command=["sleep", "600"], requires=["sh"])
    with running(config, mode, tmp_path) as roost:
        assert roost.status("sh")["state"] == "starting"
        roost.wait_state("sh", "up")
        roost.wait_state("after", "up")
        out = roost.output()
        assert "sh | fd is 3" in out
        assert out.index("sh | fd is 3") < out.index("sh: up") < out.index("after: starting")


# -- health checks -----------------------------------------------------------------------

TOGGLED_SERVER = """
import signal, socket, sys, time
port = int(sys.argv[1])
sock = socket.socket()
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind(("127.0.0.1", port))
sock.listen(64)
print("listening", flush=True)
def close(*_):
    sock.close()
    print("stopped listening", flush=True)
signal.signal(signal.SIGUSR1, close)
while True:
    try:
        conn, _ = sock.accept()
        conn.close()
    except OSError:
        time.sleep(60)
"""


@both_modes
def test_tcp_health_unhealthy_after_retries_then_restarted(tmp_path: Path, mode: str) -> None:
    config = ConfigDir(tmp_path / "conf")
    port = free_port()
    config.service("tcpd", command=[*config.python("tcpd", TOGGLED_SERVER), str(port)],
                   ready=f"tcp:127.0.0.1:{port}", restart_delay=0.2,
                   health={"tcp": f"127.0.0.1:{port}", "interval": 0.3, "timeout": 2,
                           "retries": 3})
    with running(config, mode, tmp_path) as roost:
        roost.wait_state("tcpd", "up")
        healthy = wait_for(lambda: (r := roost.status("tcpd"))["health"] == "healthy" and r,
                           timeout=20, what="healthy")
        assert isinstance(healthy, dict)
        assert healthy["health_last"] == f"connected to 127.0.0.1:{port}"
        first = healthy["pid"]
        roost.call("signal", services=["tcpd"], signal="USR1")
        roost.wait_output(r"tcpd: unhealthy after 3 failed health checks \(last: connect to "
                          rf"127\.0\.0\.1:{port}: Connection refused\)", timeout=20)
        again = wait_for(lambda: (r := roost.status("tcpd"))["state"] == "up"
                         and r["pid"] != first and r["health"] == "healthy" and r,
                         timeout=30, what="restarted and healthy again")
        assert isinstance(again, dict)
        assert again["restarts"] == 1
        assert again["last_exit"] == "unhealthy"
        out = roost.output()
        assert out.index("tcpd | stopped listening") < out.index("tcpd: stopping: unhealthy")
        assert "tcpd: backoff: unhealthy; restarting in" in out


ANSWER = """
import http.server, os, sys
flag = sys.argv[2]
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        code = 500 if os.path.exists(flag) else 200
        self.send_response(code)
        self.end_headers()
        self.wfile.write(b"ok" if code == 200 else b"broken")
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""


def test_http_health_500_is_unhealthy_and_status_shows_it(tmp_path: Path) -> None:
    config = ConfigDir(tmp_path / "conf")
    port = free_port()
    flag = tmp_path / "broken"
    config.service("web", command=[*config.python("web", ANSWER), str(port), str(flag)],
                   ready=f"tcp:127.0.0.1:{port}", restart="never",
                   health={"http": f"http://127.0.0.1:{port}/healthz", "interval": 0.3,
                           "timeout": 2, "retries": 2})
    config.service("idle", command=["sleep", "600"])
    with running(config, "pid1", tmp_path) as roost:
        wait_for(lambda: roost.status("web")["health"] == "healthy", timeout=20,
                 what="healthy")
        table = roost.cli("status")
        print(table.stdout)
        assert table.returncode == 0, table
        header, *rows = table.stdout.splitlines()
        assert header.split()[:3] == ["NAME", "STATE", "HEALTH"]
        assert {r.split()[0]: r.split()[2] for r in rows} == {"web": "healthy", "idle": "-"}
        detail = roost.cli("status", "web")
        assert "    health: healthy" in detail.stdout, detail.stdout
        assert "last probe: HTTP/1.0 200 OK" in detail.stdout, detail.stdout
        flag.write_text("")
        record = roost.wait_state("web", "failed", timeout=20)
        assert record["last_exit"] == "unhealthy"
        assert record["reason"] == "unhealthy"
        assert record["health"] == "unhealthy"
        assert record["health_failures"] == 2
        assert record["health_last"] == "HTTP/1.0 500 Internal Server Error"
        shown = roost.cli("status", "web")
        assert shown.returncode == 3, shown
        assert "    health: unhealthy (2 failed in a row)" in shown.stdout, shown.stdout
        as_json = roost.cli("status", "--json", "web")
        (parsed,) = json.loads(as_json.stdout)
        assert parsed["health"] == "unhealthy" and parsed["health_failures"] == 2
        assert roost.cli("status").returncode == 3


@both_modes
def test_http_health_of_a_paused_server_times_out_and_it_restarts(tmp_path: Path,
                                                                  mode: str) -> None:
    config = ConfigDir(tmp_path / "conf")
    port = free_port()
    script = config.script("delayed.sh", DELAYED_HTTP.format(python=PYTHON))
    config.service("files", command=[script, str(port), "0"], ready=f"tcp:127.0.0.1:{port}",
                   working_directory=str(tmp_path), restart_delay=0.2, stop_timeout=3,
                   health={"http": f"http://127.0.0.1:{port}/", "interval": 0.3,
                           "timeout": 0.5, "retries": 2})
    with running(config, mode, tmp_path) as roost:
        wait_for(lambda: roost.status("files")["health"] == "healthy", timeout=20,
                 what="healthy")
        first = roost.status("files")["pid"]
        started = time.monotonic()
        os.kill(roost.host_pid(first), signal.SIGSTOP)
        roost.wait_output(r"files: unhealthy after 2 failed health checks \(last: no answer "
                          r"within 0\.5s\)", timeout=20)
        print(f"unhealthy {time.monotonic() - started:.2f}s after SIGSTOP")
        # Stopped with SIGTERM (and the SIGCONT a stopped process needs), then restarted.
        again = wait_for(lambda: (r := roost.status("files"))["state"] == "up"
                         and r["pid"] != first and r["health"] == "healthy" and r,
                         timeout=30, what="restarted and healthy again")
        assert isinstance(again, dict) and again["restarts"] == 1


@both_modes
def test_a_hanging_probe_is_killed_at_its_timeout_with_what_it_started(tmp_path: Path,
                                                                       mode: str) -> None:
    config = ConfigDir(tmp_path / "conf")
    # The probe's processes carry a name no other test's have: a link to sleep.
    marker = tmp_path / f"probe-sleep-{mode}"
    marker.symlink_to(subprocess.check_output(["sh", "-c", "command -v sleep"],
                                              text=True).strip())
    hang = config.script("hang.sh", f"#!/bin/sh\necho probing\n{marker} 601 & exec {marker} "
                         "602\n")
    config.service("hung", command=["sleep", "600"], restart="never",
                   health={"command": [hang], "interval": 0.2, "timeout": 0.5, "retries": 2})
    with running(config, mode, tmp_path) as roost:
        roost.wait_state("hung", "up")
        wait_for(lambda: len(alive_with(str(marker))) == 2, timeout=10,
                 what="the probe and its child running")
        record = roost.wait_state("hung", "failed", timeout=20)
        assert record["last_exit"] == "unhealthy"
        assert record["health_last"] == "no answer within 0.5s: killed"
        assert record["health_checks"] == 2
        # The probe and its own child went with its process group, and were reaped.
        wait_for(lambda: not alive_with(str(marker)), timeout=5, what="the probe killed")
        assert "hung | probing" not in roost.output()  # its output is the probe's, not a log


IDENTITY = """\
#!/bin/sh
echo "uid $(id -u) mark $MARK"
[ "$(id -u)" = {uid} ] && [ "$MARK" = yes ]
"""


def test_a_probe_command_runs_as_the_service_with_its_environment(tmp_path: Path) -> None:
    with shared_directory() as shared:
        config = ConfigDir(shared / "conf")
        config.path.chmod(0o755)
        probe = config.script("who.sh", IDENTITY.replace("{uid}", str(NOBODY)))
        config.service("svc", command=["sleep", "600"], user=NOBODY,
                       environment={"MARK": "yes"},
                       health={"command": [probe], "interval": 0.2, "timeout": 5})
        config.service("other", command=["sleep", "600"], environment={"MARK": "no"},
                       health={"command": [probe], "interval": 0.2, "timeout": 5,
                               "retries": 1}, restart="never")
        with running(config, "pid1", tmp_path) as roost:
            wait_for(lambda: roost.status("svc")["health"] == "healthy", timeout=20,
                     what="healthy")
            assert roost.status("svc")["health_last"] == f"exited 0: uid {NOBODY} mark yes"
            record = roost.wait_state("other", "failed", timeout=20)
            assert record["health_last"] == "exited 1: uid 0 mark no"


# Inside a PID namespace the proc connector is silent (test_supervisor_process.py says why
# the host is not): roost's own wake-ups are all there is to count.
@pytest.mark.parametrize("role", ["pid1", "nested"])
@pytest.mark.parametrize("health", [False, True])
def test_no_timer_without_health_and_none_once_a_poll_is_over(tmp_path: Path, role: str,
                                                             health: bool) -> None:
    config = ConfigDir(tmp_path / "conf")
    flag = tmp_path / "made"
    config.service("bare", command=["sleep", "600"])
    config.service("filed", command=["sh", "-c", f': > {flag}; exec sleep 600'],
                   ready=f"file:{flag}")
    port = free_port()
    script = config.script("delayed.sh", DELAYED_HTTP.format(python=PYTHON))
    config.service("listener", command=[script, str(port), "0"], ready=f"tcp:127.0.0.1:{port}",
                   working_directory=str(tmp_path))
    config.service("piped", command=["sh", "-c", 'echo >&"$R"; exec sleep 600'],
                   ready="pipevar:R")
    if health:
        config.service("checked", command=["sleep", "600"],
                       health={"command": ["true"], "interval": 0.1})
    with running(config, role, tmp_path) as roost:
        for name in ("bare", "filed", "listener", "piped"):
            roost.wait_state(name, "up")
        init = roost.pid

        def settled() -> bool:
            before = voluntary_switches(init)
            time.sleep(0.3)
            return voluntary_switches(init) == before

        if not health:
            wait_for(settled, timeout=10, what="roost to go idle")
        before = voluntary_switches(init)
        time.sleep(3.0)
        woke = voluntary_switches(init) - before
        print(f"{role}, {'with' if health else 'without'} a health check: {woke} wake-ups in 3s")
        if health:
            assert woke >= 10  # one probe each 0.1 s: the count sees a timer when there is one
        else:
            assert woke == 0
