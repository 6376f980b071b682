"""Connections through a service's restarts: sockets held by roost, or bound by the service.

One service under `roost up`, restarted at once (restart = "always", restart_delay 0)
each time it ends by itself after serving 50 connections; a client makes 1000
connections one after another, each answered with the server's pid. "held by roost":
`sockets = ["tcp:127.0.0.1:PORT"]`, the service accepts on fd 3 (LISTEN_FDS). "bound by
the service": the same program binds the port itself at each start (SO_REUSEADDR). A
refused or reset connection is retried after 1 ms until served; its wait counts in its
time.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time

from bench.core import ROOST, Ctx, Grid, Result, Table, Target, fmt, percentile, real_python
from bench.procs import Owned

NAME = "activation"
TITLE = "Connections through restarts (socket activation)"
ORDER = 75
CONNECTIONS = 1000
PER_RUN = 50

SERVICE = r"""
import os, socket, sys
port, per_run = int(sys.argv[1]), int(sys.argv[2])
if os.environ.get("LISTEN_PID") == str(os.getpid()):
    server = socket.socket(fileno=3)
else:
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", port))
    server.listen(4096)
for _ in range(per_run):
    conn, _ = server.accept()
    conn.sendall(f"{os.getpid()}\n".encode())
    conn.close()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _one(port: int) -> tuple[float, int, int, int]:
    """Seconds until served, refusals and resets on the way, the serving pid."""
    refused = reset = 0
    t0 = time.perf_counter()
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=30) as client:
                pid = int(client.makefile().readline())
            return time.perf_counter() - t0, refused, reset, pid
        except ConnectionRefusedError:
            refused += 1
        except (ConnectionResetError, ValueError):
            # Queued in a listener that closed with its process: reset, or an empty answer.
            reset += 1
        time.sleep(0.001)


def run(ctx: Ctx) -> Result:
    """1000 connections under each arrangement, the service restarting every 50."""
    res = Result(NAME, TITLE, __doc__ or "")
    table = Table("Time from connect to answer, per connection", "ms", scale=1e3)
    grid = Grid(f"{CONNECTIONS} connections, the service restarting every {PER_RUN}",
                ["arrangement", "refused", "reset", "connections refused or reset", "runs",
                 "p50 (ms)", "p99 (ms)", "max (ms)", "total (s)"])
    refused_by: dict[str, int] = {}
    for label, held in (("held by roost", True), ("bound by the service", False)):
        work = ctx.workdir("activation")
        port = _free_port()
        (work / "web.py").write_text(SERVICE)
        keys = [f'command = ["{real_python()}", "-I", "-S", "{work / "web.py"}", "{port}", '
                f'"{PER_RUN}"]', 'restart = "always"', "restart_delay = 0",
                "restart_limit = 1000000"]
        if held:
            keys.append(f'sockets = ["tcp:127.0.0.1:{port}"]')
        conf = work / "conf"
        conf.mkdir()
        (conf / "web.toml").write_text("\n".join(keys) + "\n")
        with Owned() as owned:
            roost = owned.popen([str(ROOST), "up", "-c", str(conf), "--control",
                                 str(work / "control"), "--log-dir", str(work / "logs")])
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.02)
            # That probe was one connection of the first run's 50: start counting afresh.
            times: list[float] = []
            refusals = resets = once = 0
            pids = set()
            t0 = time.monotonic()
            for _ in range(CONNECTIONS):
                dt, refused, reset, pid = _one(port)
                times.append(dt)
                refusals += refused
                resets += reset
                once += refused + reset > 0
                pids.add(pid)
            total = time.monotonic() - t0
            roost.send_signal(signal.SIGTERM)
            try:
                roost.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        table.add(label, times)
        refused_by[label] = once
        grid.cells.append([label, str(refusals), str(resets), str(once), str(len(pids)),
                           fmt(percentile(times, 50) * 1e3, 2),
                           fmt(percentile(times, 99) * 1e3, 2), fmt(max(times) * 1e3, 2),
                           fmt(total, 2)])
    res.tables += [grid, table]
    held_refused = refused_by["held by roost"]
    res.targets.append(Target("socket activation: no connection refused or reset through "
                              "restarts", held_refused == 0,
                              f"{held_refused} of {CONNECTIONS} (bound by the service: "
                              f"{refused_by['bound by the service']})"))
    res.headlines.append(f"socket activation: {held_refused} of {CONNECTIONS} connections refused "
                         "or reset "
                         f"through {CONNECTIONS // PER_RUN} restarts with roost holding the "
                         f"socket, {refused_by['bound by the service']} with the service "
                         "binding it")
    return res
