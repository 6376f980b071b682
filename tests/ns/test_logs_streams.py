"""Service output by stream and by run, and forwarded to a real syslog daemon (rsyslog).

A real roost runs services that write to both stdout and stderr and crash; `roost log`
(human and --json), the log file and the console must each say which stream a line came
from and where a new run began. rsyslog, unpacked from Debian's package and run as one of
roost's own services (Type=notify, as its unit says), receives every other service's
output over its socket, through a restart of the daemon; a socket another user could
have bound gets nothing.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest

from tests import debs
from tests.ns.supervisor_kit import (
    PYTHON,
    ConfigDir,
    both_modes,
    lines_of,
    running,
    shared_directory,
)
from tests.support import wait_for

pytestmark = pytest.mark.timeout(120)

STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3} "

# One line to each stream per run, the error first; the first two runs crash.
TWO_STREAMS = """
import os, sys
counter = sys.argv[1]
run = int(open(counter).read()) + 1 if os.path.exists(counter) else 1
open(counter, "w").write(str(run))
sys.stderr.write(f"run {run} complains\\n"); sys.stderr.flush()
sys.stdout.write(f"run {run} reports\\n"); sys.stdout.flush()
if run < 3:
    os._exit(4)
import time
time.sleep(600)
"""

# Lines to stdout and stderr in turn, each written at once: their order is the test.
ALTERNATE = """
import os, time
for n in range(200):
    os.write(1 + n % 2, f"{n}\\n".encode())
time.sleep(600)
"""


@both_modes
def test_each_line_knows_its_stream_and_each_run_is_marked(tmp_path: Path, mode: str) -> None:
    config = ConfigDir(tmp_path / "conf")
    config.settings(log_dir="logs")
    config.service("svc", command=[*config.python("svc", TWO_STREAMS), str(tmp_path / "n")],
                   restart_delay=0.05, restart_delay_max=0.1)
    config.service("merged", command=config.python("alternate", ALTERNATE), stderr="stdout")
    config.service("apart", command=config.python("alternate", ALTERNATE))
    with running(config, mode, tmp_path) as roost:
        roost.wait_output(r"svc \| run 3 reports")
        records = [json.loads(line) for line in roost.cli(
            "log", "svc", "--json", "-n", "100").stdout.splitlines()]
        got = [(r["stream"], r["line"]) for r in records]
        # Each run's two lines (their order within a run is the reactor's), then a mark.
        assert [got[i] for i in (2, 5)] == [("roost", "-- svc restarted: exited 4 --")] * 2, got
        for run, pair in enumerate((got[0:2], got[3:5], got[6:8]), start=1):
            assert sorted(pair) == [("err", f"run {run} complains"),
                                    ("out", f"run {run} reports")], got
        assert len(got) == 8, got
        human = roost.cli("log", "svc", "-n", "100").stdout.splitlines()
        assert len(human) == 8
        assert all(re.match(STAMP, line) for line in human), human
        texts = [line[24:] for line in human]
        assert "! run 1 complains" in texts and "run 1 reports" in texts, texts
        assert texts.count("-- svc restarted: exited 4 --") == 2, texts
        named = roost.cli("log", "svc", "apart", "-n", "100").stdout
        assert " svc ! run 3 complains\n" in named and " svc | run 3 reports\n" in named
        # The file names the stream of every line; the console marks stderr with `!`.
        file_lines = lines_of(config.path / "logs" / "svc.log")
        assert sorted(line.split(" ", 1)[1] for line in file_lines) == sorted(
            [f"err run {n} complains" for n in (1, 2, 3)]
            + [f"out run {n} reports" for n in (1, 2, 3)]
            + ["roost -- svc restarted: exited 4 --"] * 2)
        console = roost.output()
        assert re.search(STAMP + r"svc ! run 1 complains$", console, re.M), console
        assert re.search(STAMP + r"svc \| run 1 reports$", console, re.M), console
        assert "svc restarted" not in console  # roost's own lines there say it already

        # stderr = "stdout": one pipe, the written order kept, every line `out`.
        def lines_of_service(name: str) -> list[tuple[str, str]]:
            result = roost.cli("log", name, "--json", "-n", "1000")
            return [(r["stream"], r["line"]) for r in map(json.loads,
                                                            result.stdout.splitlines())]

        wait_for(lambda: len(lines_of_service("merged")) == 200, timeout=15,
                 what="the merged service's 200 lines")
        assert lines_of_service("merged") == [("out", str(n)) for n in range(200)]
        # Two pipes: each stream's own order kept, each line of its stream.
        wait_for(lambda: len(lines_of_service("apart")) == 200, timeout=15,
                 what="the separate service's 200 lines")
        apart = lines_of_service("apart")
        assert [int(t) for s, t in apart if s == "out"] == list(range(0, 200, 2))
        assert [int(t) for s, t in apart if s == "err"] == list(range(1, 200, 2))
        status = roost.call("status")
        assert {r["name"]: r["state"] for r in status} == {
            "svc": "up", "merged": "up", "apart": "up"}


RSYSLOG_CONF = """
module(load="imuxsock" SysSock.Name="{socket}" SysSock.Unlink="on"
       SysSock.RateLimit.Interval="0")
template(name="plain" type="string"
         string="%syslogfacility-text%.%syslogseverity-text% %programname%:%msg%\\n")
*.* action(type="omfile" file="{messages}" template="plain")
"""

# Counts lines on stdout, with a line to stderr and one with a level prefix first.
TALKER = """
import sys, time
print("hello from talker", flush=True)
print("something is wrong", file=sys.stderr, flush=True)
print("<2>the disk is gone", flush=True)
n = 0
while True:
    print(f"tick {n}", flush=True)
    n += 1
    time.sleep(0.1)
"""


def rsyslog(config: ConfigDir, tmp_path: Path) -> tuple[Path, Path]:
    """rsyslogd as a roost service, from its own unit's command and type; (socket, messages)."""
    rsyslogd = debs.program("rsyslogd")
    if rsyslogd is None:
        pytest.skip("SKIPPED: rsyslogd is neither unpacked nor installed "
                    "(python -m tests.debs unpacks package rsyslog)")
    socket_path, messages = tmp_path / "syslog" / "log", tmp_path / "syslog" / "messages"
    socket_path.parent.mkdir(mode=0o755)
    conf = tmp_path / "syslog" / "rsyslog.conf"
    conf.write_text(RSYSLOG_CONF.format(socket=socket_path, messages=messages))
    modules = [str(p) for p in Path(rsyslogd).parents[1].glob("lib/*/rsyslog")]
    # Debian's unit: Type=notify, ExecStart=/usr/sbin/rsyslogd -n -iNONE.
    config.service("syslog", type="notify", environment=debs.environment(rsyslogd),
                   command=[rsyslogd, "-n", "-iNONE", "-f", str(conf),
                            *(["-M", modules[0]] if modules else [])])
    return socket_path, messages


def test_service_output_reaches_a_real_rsyslog_through_its_restart(tmp_path: Path) -> None:
    config = ConfigDir(tmp_path / "conf")
    socket_path, messages = rsyslog(config, tmp_path)
    config.settings(log_syslog=str(socket_path), log_syslog_facility="local3")
    config.service("talker", command=config.python("talker", TALKER), wants=["syslog"])
    with running(config, "pid1", tmp_path) as roost:
        roost.wait_state("syslog", "up")

        def filed() -> list[str]:
            return [line for line in lines_of(messages) if " talker:" in line]

        wait_for(lambda: any("tick 3" in line for line in filed()), timeout=20,
                 what="the talker's lines in rsyslog's file")
        first = filed()
        # Standard output in its order; the stderr line in between (two pipes).
        assert [line for line in first if ".err " not in line][:3] == [
            "local3.info talker: hello from talker", "local3.crit talker: the disk is gone",
            "local3.info talker: tick 0"], first
        assert [line for line in first if ".err " in line] == [
            "local3.err talker: something is wrong"], first
        # The daemon goes away: lines are dropped, counted, said once; none waits.
        assert roost.cli("stop", "syslog").returncode == 0
        roost.wait_output(rf"syslog {socket_path}: lines dropped \(", timeout=10)
        time.sleep(0.5)
        assert roost.status("talker")["state"] == "up"
        assert roost.cli("start", "syslog").returncode == 0
        match = roost.wait_output(rf"syslog {socket_path}: taking lines again; (\d+) dropped",
                                  timeout=15)
        assert int(match.group(1)) >= 3, match.group(0)
        ticks = [int(line.rsplit(" ", 1)[1]) for line in filed() if ": tick " in line]
        assert ticks == sorted(set(ticks)), ticks  # in order, none twice
        # The gap is the dropped lines: each tick either filed or among those counted.
        wait_for(lambda: len([1 for line in filed() if ": tick " in line]) > len(ticks) + 3,
                 timeout=10, what="ticks after the restart")
        assert roost.output().count("lines dropped (") == 1
        # Every line also went where it always goes.
        assert "! something is wrong" in roost.cli("log", "talker", "-n", "1000").stdout


def test_a_socket_another_user_could_bind_gets_nothing(tmp_path: Path) -> None:
    with shared_directory() as shared:
        shared.chmod(0o1777)
        path = shared / "log"
        # uid 65534 binds the path first and listens for whatever roost would send.
        listener = subprocess.Popen(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
             PYTHON, "-I", "-S", "-c",
             "import socket, sys\n"
             "s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
             "s.bind(sys.argv[1]); print('bound', flush=True); s.settimeout(4)\n"
             "try:\n    print('GOT', s.recv(4096), flush=True)\n"
             "except TimeoutError:\n    print('nothing', flush=True)\n", str(path)],
            stdout=subprocess.PIPE, text=True)
        try:
            assert listener.stdout is not None
            assert listener.stdout.readline().strip() == "bound"
            config = ConfigDir(tmp_path / "conf")
            config.settings(log_syslog=str(path))
            config.service("secretive", command=["sh", "-c", "echo the password is 42; "
                                                 "exec sleep 600"])
            with running(config, "pid1", tmp_path) as roost:
                roost.wait_output(r"secretive \| the password is 42")
                roost.wait_output(rf"syslog {path}: lines dropped \({shared} has mode 1777: "
                                  "another user could create the file\\)")
                out, _ = listener.communicate(timeout=10)
            assert out.strip() == "nothing", out
        finally:
            listener.kill()
            listener.wait(timeout=10)
