"""Socket activation for `roost up`: roost listens, the service is handed the sockets.

`sockets = [...]` are opened by roost before the service's first start and passed from
fd 3 up with LISTEN_FDS, LISTEN_PID (the child's own pid) and LISTEN_FDNAMES, as
sd_listen_fds(3) reads them. They outlive the service's restarts: 1000 connections made
while the service ends itself every 50 are all served, none refused. A stop closes them;
a bad address fails the start, not roost; a path roost does not control is refused.
"""

from __future__ import annotations

import shutil
import socket
import stat
import subprocess
import time
from pathlib import Path

import pytest

from tests.ns.supervisor_kit import ConfigDir, both_modes, running
from tests.support import wait_for

pytestmark = [pytest.mark.timeout(180), pytest.mark.usefixtures("unshare_required")]

# Report what was handed, then serve the first stream socket: each connection gets the
# server's pid; after `limit` connections the run ends by itself (0: never).
SERVICE = r"""
import os, socket, stat, sys
report, limit = sys.argv[1], int(sys.argv[2])
n = int(os.environ["LISTEN_FDS"])
kinds = []
for fd in range(3, 3 + n):
    if stat.S_ISFIFO(os.fstat(fd).st_mode):
        kinds.append("fifo")
        continue
    s = socket.socket(fileno=os.dup(fd))
    kinds.append(f"{s.family.name}/{s.type.name}")
    s.close()
with open(report, "a") as f:
    f.write(" ".join([os.environ["LISTEN_PID"] == str(os.getpid()) and "pid-ok" or "pid-bad",
                      os.environ["LISTEN_FDNAMES"], *kinds]) + "\n")
server = socket.socket(fileno=3)
served = 0
while limit == 0 or served < limit:
    conn, _ = server.accept()
    conn.sendall(f"{os.getpid()}\n".encode())
    conn.close()
    served += 1
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ask(port: int) -> int:
    """One connection: the pid of the run that served it."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as client:
        return int(client.makefile().readline())


# What another uid runs to connect: Debian's interpreter, which it may read.
CONNECT = "import socket, sys; socket.socket(socket.AF_UNIX).connect(sys.argv[1]); print('in')"


@both_modes
def test_the_service_is_handed_every_kind_of_socket(tmp_path: Path, mode: str) -> None:
    report = tmp_path / "report"
    port, udp = free_port(), free_port()
    # A directory anyone may enter, so that only the sockets' own modes decide.
    place = Path("/run") / f"roost-test-{tmp_path.name}"
    place.mkdir(mode=0o755)
    unix, public, fifo = place / "ctl.sock", place / "public.sock", place / "events.fifo"
    config = ConfigDir(tmp_path / "conf")
    config.service("web", command=[*config.python("web", SERVICE), str(report), "0"],
                   sockets=[f"tcp:127.0.0.1:{port}", {"listen": f"udp:127.0.0.1:{udp}",
                                                      "name": "dns"},
                            {"listen": f"unix:{unix}", "name": "control", "mode": "0600"},
                            f"fifo:{fifo}", "unix:@roost-test-abstract-" + tmp_path.name,
                            f"unix:{public}"])
    try:
        with running(config, mode, tmp_path) as roost:
            record = roost.wait_state("web", "up", timeout=30)
            assert record["listening"] == 6
            wait_for(lambda: report.exists() and report.read_text(), timeout=15,
                     what="the service's report")
            assert report.read_text().split() == [
                "pid-ok", "web:dns:control:web:web:web", "AF_INET/SOCK_STREAM",
                "AF_INET/SOCK_DGRAM", "AF_UNIX/SOCK_STREAM", "fifo", "AF_UNIX/SOCK_STREAM",
                "AF_UNIX/SOCK_STREAM"]
            assert ask(port) == record["pid"]
            info = unix.lstat()
            assert stat.S_ISSOCK(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o600
            assert (info.st_uid, info.st_gid) == (0, 0)
            assert stat.S_IMODE(public.lstat().st_mode) == 0o666
            assert stat.S_IMODE(fifo.lstat().st_mode) == 0o666
            # Another uid reaches the public socket, and not the 0600 one beside it.
            nobody = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups",
                      "/usr/bin/python3", "-I", "-c", CONNECT]
            reached = subprocess.run([*nobody, str(public)], capture_output=True, text=True,
                                     timeout=30, check=False)
            assert reached.stdout.strip() == "in", reached
            refused = subprocess.run([*nobody, str(unix)], capture_output=True, text=True,
                                     timeout=30, check=False)
            assert refused.returncode != 0 and "PermissionError" in refused.stderr, refused
    finally:
        shutil.rmtree(place, ignore_errors=True)


@both_modes
def test_a_thousand_connections_across_restarts_none_refused(tmp_path: Path,
                                                             mode: str) -> None:
    report = tmp_path / "report"
    port = free_port()
    config = ConfigDir(tmp_path / "conf")
    config.service("web", command=[*config.python("web", SERVICE), str(report), "50"],
                   sockets=[f"tcp:127.0.0.1:{port}"], restart="always", restart_delay=0,
                   restart_limit=1000)
    with running(config, mode, tmp_path) as roost:
        roost.wait_state("web", "up", timeout=30)
        served_by: list[int] = []
        refused = failed = 0
        for _ in range(1000):
            try:
                served_by.append(ask(port))
            except ConnectionRefusedError:
                refused += 1
            except (OSError, ValueError):
                failed += 1
        assert (refused, failed) == (0, 0)
        runs = len(set(served_by))
        assert runs == 20, f"every run serves 50: {runs} runs"
        assert roost.status("web")["restarts"] >= 19


def test_a_stop_closes_the_sockets_and_a_start_opens_them_again(tmp_path: Path) -> None:
    report = tmp_path / "report"
    port = free_port()
    config = ConfigDir(tmp_path / "conf")
    config.service("web", command=[*config.python("web", SERVICE), str(report), "0"],
                   sockets=[f"tcp:127.0.0.1:{port}"])
    with running(config, "pid1", tmp_path) as roost:
        first = roost.wait_state("web", "up", timeout=30)
        roost.call("signal", services=["web"], signal="KILL")
        again = wait_for(lambda: (r := roost.status("web"))["state"] == "up"
                         and r["pid"] != first["pid"] and r, timeout=30, what="a restart")
        assert isinstance(again, dict) and ask(port) == again["pid"]
        roost.call("stop", services=["web"], wait=True, timeout=30)
        roost.wait_output(r"web: closed 1 sockets")
        with pytest.raises(ConnectionRefusedError):
            ask(port)
        roost.call("start", services=["web"], wait=True, timeout=30)
        assert ask(port) == roost.status("web")["pid"]


def test_a_reload_that_changes_the_sockets_moves_the_service(tmp_path: Path) -> None:
    report = tmp_path / "report"
    old, new = free_port(), free_port()
    config = ConfigDir(tmp_path / "conf")
    argv = [*config.python("web", SERVICE), str(report), "0"]
    config.service("web", command=argv, sockets=[f"tcp:127.0.0.1:{old}"])
    with running(config, "pid1", tmp_path) as roost:
        roost.wait_state("web", "up", timeout=30)
        assert ask(old)
        config.service("web", command=argv, sockets=[f"tcp:127.0.0.1:{new}"])
        roost.call("reload")
        wait_for(lambda: _answers(new), timeout=30, what="the new port served")
        with pytest.raises(ConnectionRefusedError):
            ask(old)


def _answers(port: int) -> bool:
    try:
        return ask(port) > 0
    except OSError:
        return False


def test_an_address_in_use_fails_the_start_not_roost(tmp_path: Path) -> None:
    report = tmp_path / "report"
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    config = ConfigDir(tmp_path / "conf")
    config.service("web", command=[*config.python("web", SERVICE), str(report), "0"],
                   sockets=[f"tcp:127.0.0.1:{port}"], restart_delay=0.2, restart_limit=2,
                   restart_window=60)
    config.service("other", command=["sleep", "60"])
    try:
        with running(config, "pid1", tmp_path) as roost:
            roost.wait_state("other", "up", timeout=30)
            failed = roost.wait_state("web", "failed", timeout=30)
            assert f"cannot listen on tcp:127.0.0.1:{port}: Address already in use" in \
                roost.output(), roost.output()
            assert failed["pid"] is None and not report.exists()
    finally:
        holder.close()


@pytest.mark.parametrize("planted", ["file", "others-may-write"])
def test_a_path_roost_does_not_control_is_refused_and_left_alone(tmp_path: Path,
                                                                 planted: str) -> None:
    report = tmp_path / "report"
    place = tmp_path / "shared"
    place.mkdir()
    target = place / "web.sock"
    if planted == "file":
        target.write_text("someone's data\n")
    else:
        place.chmod(0o777)  # another user could swap the socket for a link
    config = ConfigDir(tmp_path / "conf")
    config.service("web", command=[*config.python("web", SERVICE), str(report), "0"],
                   sockets=[f"unix:{target}"], restart="never")
    with running(config, "pid1", tmp_path) as roost:
        roost.wait_state("web", "failed", timeout=30)
        said = roost.output()
        assert f"cannot listen on unix:{target}" in said, said
        assert ("exists and is not a socket" if planted == "file" else "mode 0777") in said
    if planted == "file":
        assert target.read_text() == "someone's data\n"
    else:
        assert not target.exists()


def test_a_socket_in_the_services_runtime_directory_is_made_again_after_a_stop(
        tmp_path: Path) -> None:
    # runtime_directory goes at every stop, and the socket's file with it: the next start
    # listens again at the path, so clients find it.
    report = tmp_path / "report"
    name = f"roost-test-{tmp_path.name}"
    path = Path("/run") / name / "web.sock"
    config = ConfigDir(tmp_path / "conf")
    config.service("web", command=[*config.python("web", SERVICE), str(report), "0"],
                   sockets=[f"unix:{path}"], runtime_directory=name)
    with running(config, "pid1", tmp_path) as roost:
        roost.wait_state("web", "up", timeout=30)
        assert path.is_socket()
        roost.call("stop", services=["web"], wait=True, timeout=30)
        assert not path.exists()
        roost.call("start", services=["web"], wait=True, timeout=30)
        deadline = time.monotonic() + 10
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        client = socket.socket(socket.AF_UNIX)
        client.settimeout(30)
        client.connect(str(path))
        with client:
            assert int(client.makefile().readline()) == roost.status("web")["pid"]
