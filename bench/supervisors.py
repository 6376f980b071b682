"""The supervisors under test, behind one interface: write config, start, wait up, stop.

Each runs as PID 2 of a PID namespace of its own (see procs.NsRun); "start" is
nsinit's timestamp right before it forks the supervisor, and "all stopped" is
nsinit's timestamp when no process is left in the namespace.  "Up" means what
each program itself reports: roost `up`, supervisord RUNNING (startsecs=0),
circus watcher `active`, runit `run` in supervise/stat, s6 a non-zero pid in
supervise/status.  Every in-process poller polls at the same interval.
"""

from __future__ import annotations

import dataclasses
import http.client
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
import xmlrpc.client
from pathlib import Path
from typing import Any

from bench import native, procs, roostctl
from bench.core import BENCH_DIR, ROOST, Skip
from bench.peers import Peers

POLL_S = 0.01
_addr_ids = itertools.count()


@dataclasses.dataclass
class Service:
    """A service to supervise: `exe` with no arguments, or with a data file path if `data`.

    `roost_extra` adds keys to roost's NAME.toml (a scenario must say so in its report).
    """

    name: str
    exe: str
    data: bool = False
    roost_extra: dict[str, int | float | str] = dataclasses.field(default_factory=dict)


def idle_services(n: int) -> list[Service]:
    """n services that sleep until killed."""
    return [Service(f"svc{i:04d}", native.path("bench-idle")) for i in range(n)]


def service_exes() -> set[str]:
    """Executables that are services, not supervisor processes."""
    return {os.path.realpath(native.path(n)) for n in ("bench-idle", "bench-crashy")}


class Supervisor:
    """One supervisor program, configured in a work directory."""

    name = "?"
    needs: tuple[str, ...] = ()
    counts = ""  # which processes are counted as the supervisor's own

    def __init__(self, peers: Peers, workdir: Path) -> None:
        self.peers = peers
        self.dir = workdir
        self.ns: procs.NsRun | None = None
        self.owned: procs.Owned | None = None
        self.services: list[Service] = []

    @classmethod
    def check(cls, peers: Peers, roost_ok: bool, roost_reason: str) -> str:
        """'' if this supervisor can run here, else why not."""
        return peers.why_not(*cls.needs)

    def bin(self, name: str) -> str:
        """Path of one of the peer's programs."""
        return self.peers.paths[name]

    def data_file(self, svc: Service) -> str:
        """Where a `data` service writes (its one argument)."""
        return str(self.dir / "data" / f"{svc.name}.log")

    def configure(self, services: list[Service]) -> None:
        """Write the configuration for these services."""
        raise NotImplementedError

    def argv(self) -> list[str]:
        """The command line that runs the supervisor in the foreground."""
        raise NotImplementedError

    def start(self, owned: procs.Owned, services: list[Service]) -> float:
        """Configure and start; returns the start instant (monotonic s)."""
        self.services = services
        (self.dir / "data").mkdir(parents=True, exist_ok=True)
        self.configure(services)
        self.owned = owned
        self.before_start()
        self.ns = owned.ns(self.argv(), self.dir / "supervisor.log", cwd=self.dir)
        return self.ns.event("start", 10)

    def before_start(self) -> None:
        """Hook run right before the supervisor starts (circus arms its poller here)."""

    def up_count(self) -> int:
        """How many services the supervisor reports up right now."""
        raise NotImplementedError

    def wait_up(self, timeout: float) -> float:
        """Poll until every service is up; the instant it was seen (monotonic s)."""
        want = len(self.services)
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            try:
                seen = self.up_count()
            except (OSError, roostctl.ControlError, xmlrpc.client.Fault, ValueError,
                    http.client.HTTPException):
                seen = 0
            now = time.monotonic()
            if seen >= want:
                return now
            if now > deadline:
                raise TimeoutError(f"{self.name}: {seen}/{want} services up after {timeout} s")
            self._check_alive()
            time.sleep(POLL_S)

    def _check_alive(self) -> None:
        assert self.ns is not None
        if self.ns.has("exit"):
            raise RuntimeError(f"{self.name} exited early; see {self.dir / 'supervisor.log'}")

    def request_stop(self) -> float:
        """Ask the supervisor to stop everything; returns the request instant."""
        raise NotImplementedError

    def stop(self, timeout: float) -> tuple[float, float]:
        """Stop; returns (request instant, instant the namespace was empty)."""
        assert self.ns is not None
        t0 = self.request_stop()
        return t0, self.ns.event("empty", timeout)

    def own_pids(self) -> list[int]:
        """Host PIDs of the supervisor's own processes (services excluded)."""
        assert self.ns is not None
        skip = service_exes()
        return [p for p in self.ns.pids() if os.path.realpath(procs.exe(p)) not in skip]

    def main_pid(self) -> int:
        """Host PID of the supervisor's main process."""
        assert self.ns is not None
        return self.ns.main_pid

    def status_cli(self) -> list[str]:
        """The peer's own status command for every service."""
        raise NotImplementedError


class Roost(Supervisor):
    """`roost up -c DIR --control @addr --log-dir DIR`."""

    name = "roost"
    counts = "every process of roost's (the `roost up` interpreter and anything it forks)"

    def __init__(self, peers: Peers, workdir: Path) -> None:
        super().__init__(peers, workdir)
        self.addr = f"@roost-bench-{os.getpid()}-{next(_addr_ids)}"

    @classmethod
    def check(cls, peers: Peers, roost_ok: bool, roost_reason: str) -> str:
        """roost runs only once its console script works."""
        return "" if roost_ok else roost_reason

    def configure(self, services: list[Service]) -> None:
        """One NAME.toml per service."""
        conf = self.dir / "conf"
        conf.mkdir()
        (self.dir / "logs").mkdir()
        for s in services:
            cmd = [s.exe, self.data_file(s)] if s.data else [s.exe]
            lines = [
                "command = [" + ", ".join(f'"{c}"' for c in cmd) + "]",
                'restart = "always"',
                "restart_delay = 0",
                *(f"{k} = {json.dumps(v)}" for k, v in s.roost_extra.items()),
            ]
            (conf / f"{s.name}.toml").write_text("\n".join(lines) + "\n")

    def argv(self) -> list[str]:
        """roost up in the foreground."""
        return [str(ROOST), "up", "-c", str(self.dir / "conf"), "--control", self.addr,
                "--log-dir", str(self.dir / "logs")]

    def status(self) -> list[dict[str, Any]]:
        """In-process status over the control socket."""
        return roostctl.status(self.addr, timeout=5.0)

    def up_count(self) -> int:
        """Services in state `up`."""
        return sum(1 for s in self.status() if s.get("state") == "up")

    def request_stop(self) -> float:
        """`roost shutdown --control ADDR` (the CLI's start-up is part of the stop time)."""
        assert self.owned is not None
        t0 = time.monotonic()
        self.owned.popen([*self.status_cli()[:1], "shutdown", "--control", self.addr],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return t0

    def status_cli(self) -> list[str]:
        """`roost status --control ADDR --json`."""
        return [str(ROOST), "status", "--control", self.addr, "--json"]


class _UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


def supervisor_rpc(sock: str, method: str, *params: Any) -> Any:
    """One XML-RPC call to supervisord over its unix socket, in-process."""
    body = xmlrpc.client.dumps(params, method)
    conn = _UnixHTTP(sock, 10.0)
    try:
        conn.request("POST", "/RPC2", body, {"Content-Type": "text/xml"})
        data = conn.getresponse().read()
    finally:
        conn.close()
    return xmlrpc.client.loads(data)[0][0]


class Supervisord(Supervisor):
    """supervisord 4 in the foreground (-n), startsecs=0, polled over XML-RPC."""

    name = "supervisord"
    needs = ("supervisord", "supervisorctl")
    counts = "the supervisord process"

    @property
    def sock(self) -> str:
        """supervisord's unix socket."""
        return str(self.dir / "supervisor.sock")

    def configure(self, services: list[Service]) -> None:
        """supervisord.conf with one [program:x] per service."""
        (self.dir / "childlogs").mkdir()
        out = [
            "[unix_http_server]", f"file={self.sock}", "",
            "[supervisord]", "nodaemon=true", f"logfile={self.dir / 'supervisord.log'}",
            f"pidfile={self.dir / 'supervisord.pid'}", f"childlogdir={self.dir / 'childlogs'}",
            "loglevel=warn", "minfds=16384", "minprocs=4096", "",
            "[rpcinterface:supervisor]",
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface", "",
            "[supervisorctl]", f"serverurl=unix://{self.sock}", "",
        ]
        for s in services:
            cmd = f"{s.exe} {self.data_file(s)}" if s.data else s.exe
            out += [
                f"[program:{s.name}]", f"command={cmd}", "autostart=true", "autorestart=true",
                "startsecs=0", "startretries=1000000", "stopwaitsecs=10", "",
            ]
        (self.dir / "supervisord.conf").write_text("\n".join(out))

    def argv(self) -> list[str]:
        """supervisord -n -c CONF."""
        return [self.bin("supervisord"), "-n", "-c", str(self.dir / "supervisord.conf")]

    def up_count(self) -> int:
        """Programs in state RUNNING."""
        infos = supervisor_rpc(self.sock, "supervisor.getAllProcessInfo")
        return sum(1 for i in infos if i.get("statename") == "RUNNING")

    def request_stop(self) -> float:
        """SIGTERM: supervisord stops every program, then exits."""
        pid = self.main_pid()
        t0 = time.monotonic()
        os.kill(pid, signal.SIGTERM)
        return t0

    def status_cli(self) -> list[str]:
        """supervisorctl status."""
        return [self.bin("supervisorctl"), "-c", str(self.dir / "supervisord.conf"), "status"]


class Circus(Supervisor):
    """circusd 0.19 with one watcher per service; readiness from its own `status` command."""

    name = "circus"
    needs = ("circusd", "circusctl")
    counts = "the circusd process (all its threads)"

    def __init__(self, peers: Peers, workdir: Path) -> None:
        super().__init__(peers, workdir)
        self.endpoint = f"ipc://{workdir}/circus.sock"
        self.waiter: subprocess.Popen[bytes] | None = None

    def configure(self, services: list[Service]) -> None:
        """circus.ini with one [watcher:x] per service."""
        out = [
            "[circus]", f"endpoint = {self.endpoint}",
            f"pubsub_endpoint = ipc://{self.dir}/circus-pub.sock",
            # A stats_endpoint would turn circusd-stats on: leave it out.
            "statsd = False", "warmup_delay = 0", "loglevel = WARNING", "",
        ]
        for s in services:
            out += [f"[watcher:{s.name}]", f"cmd = {s.exe}"]
            if s.data:
                out.append(f"args = {self.data_file(s)}")
            out += ["numprocesses = 1", "respawn = True", "warmup_delay = 0", ""]
        (self.dir / "circus.ini").write_text("\n".join(out))

    def argv(self) -> list[str]:
        """circusd CONF (it stays in the foreground without --daemon)."""
        return [self.bin("circusd"), "--log-output", str(self.dir / "circusd.log"),
                str(self.dir / "circus.ini")]

    def before_start(self) -> None:
        """Start the poller (bench venv) first, so its imports are not on the clock."""
        assert self.owned is not None
        helper = BENCH_DIR / "helpers" / "circus_wait.py"
        self.waiter = self.owned.popen(
            [self.peers.bench_python, str(helper), self.endpoint, str(len(self.services)),
             "600", str(POLL_S), "svc"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )
        assert self.waiter.stdout is not None
        line = self.waiter.stdout.readline().decode()
        if line.strip() != "armed":
            raise RuntimeError(f"circus poller did not start: {line!r}")

    def wait_up(self, timeout: float) -> float:
        """Read the poller's verdict."""
        assert self.waiter is not None and self.waiter.stdout is not None
        import selectors

        with selectors.DefaultSelector() as sel:
            sel.register(self.waiter.stdout, selectors.EVENT_READ)
            if not sel.select(timeout):
                raise TimeoutError(f"circus: not all up after {timeout} s")
        line = self.waiter.stdout.readline().decode().split()
        self.waiter.wait(5)
        if not line or line[0] != "up":
            raise TimeoutError(f"circus: poller says {line}")
        return float(line[1])

    def up_count(self) -> int:
        """Not used: circus is polled by its own client in the bench venv."""
        raise NotImplementedError

    def request_stop(self) -> float:
        """SIGTERM: circusd stops every watcher, then exits."""
        pid = self.main_pid()
        t0 = time.monotonic()
        os.kill(pid, signal.SIGTERM)
        return t0

    def status_cli(self) -> list[str]:
        """circusctl status."""
        return [self.bin("circusctl"), "--endpoint", self.endpoint, "status"]


class Runit(Supervisor):
    """runsvdir over a directory of service dirs; `run` is a symlink to the service binary."""

    name = "runit"
    needs = ("runsvdir", "runsv", "sv")
    counts = "runsvdir and every runsv (one per service)"

    def svdir(self, svc: Service) -> Path:
        """The service directory."""
        return self.dir / "sv" / svc.name

    def data_file(self, svc: Service) -> str:
        """runsv starts `run` in the service dir with no argument: the log lands there."""
        return str(self.svdir(svc) / "crash.log")

    def configure(self, services: list[Service]) -> None:
        """One service dir per service, `run` a symlink to the binary (no shell)."""
        for s in services:
            d = self.svdir(s)
            d.mkdir(parents=True)
            (d / "run").symlink_to(s.exe)
        # runsvdir does not scan a directory modified within the current second (it
        # waits a second to avoid a race); service dirs of a booting system are old.
        old = time.time() - 10
        for d in [self.svdir(services[0]).parent, *(self.svdir(s) for s in services)]:
            os.utime(d, (old, old))

    def argv(self) -> list[str]:
        """runsvdir DIR."""
        return [self.bin("runsvdir"), str(self.dir / "sv")]

    def up_count(self) -> int:
        """Services whose supervise/stat says `run`."""
        up = 0
        for s in self.services:
            try:
                if (self.svdir(s) / "supervise" / "stat").read_bytes().startswith(b"run"):
                    up += 1
            except OSError:
                pass
        return up

    def request_stop(self) -> float:
        """SIGHUP: runsvdir TERMs every runsv (each stops its service and exits), then exits."""
        pid = self.main_pid()
        t0 = time.monotonic()
        os.kill(pid, signal.SIGHUP)
        return t0

    def status_cli(self) -> list[str]:
        """sv status on every service dir."""
        return ["sv", "status", *[str(self.svdir(s)) for s in self.services]]


class S6(Runit):
    """s6-svscan over a scan directory; `run` is a symlink to the service binary."""

    name = "s6"
    needs = ("s6-svscan", "s6-supervise", "s6-svstat")
    counts = "s6-svscan and every s6-supervise (one per service)"

    def svdir(self, svc: Service) -> Path:
        """The service directory."""
        return self.dir / "scan" / svc.name

    def argv(self) -> list[str]:
        """s6-svscan -c MAX DIR (the default maximum is below 1000 services)."""
        return [self.bin("s6-svscan"), "-c", str(max(1000, 2 * len(self.services))),
                str(self.dir / "scan")]

    def configure(self, services: list[Service]) -> None:
        """One service dir per service in the scan directory."""
        (self.dir / "scan").mkdir()
        super().configure(services)

    def up_count(self) -> int:
        """Services whose supervise/status has a non-zero pid (bytes 24..31)."""
        up = 0
        for s in self.services:
            try:
                data = (self.svdir(s) / "supervise" / "status").read_bytes()
            except OSError:
                continue
            if len(data) >= 32 and int.from_bytes(data[24:32], "big") != 0:
                up += 1
        return up

    def request_stop(self) -> float:
        """SIGTERM: s6-svscan brings every service down, then exits (like s6-svscanctl -t)."""
        pid = self.main_pid()
        t0 = time.monotonic()
        os.kill(pid, signal.SIGTERM)
        return t0

    def status_cli(self) -> list[str]:
        """s6-svstat on one service dir (it takes exactly one)."""
        return [self.bin("s6-svstat"), str(self.svdir(self.services[0]))]


ALL: list[type[Supervisor]] = [Roost, Supervisord, Circus, Runit, S6]


def available(ctx: Any) -> tuple[list[type[Supervisor]], dict[str, str]]:
    """The supervisors that can run, and why the others cannot."""
    ok, why = [], {}
    for cls in ALL:
        reason = cls.check(ctx.peers, ctx.roost_ok, ctx.roost_reason)
        if reason:
            why[cls.name] = reason
        else:
            ok.append(cls)
    return ok, why


def run_one(cls: type[Supervisor], ctx: Any, services: list[Service], prefix: str,
            timeout: float = 300.0) -> Any:
    """A context manager: a started supervisor that is killed and cleaned up on exit."""
    return _Running(cls, ctx, services, prefix, timeout)


class _Running:
    def __init__(self, cls: type[Supervisor], ctx: Any, services: list[Service], prefix: str,
                 timeout: float) -> None:
        self.cls, self.ctx, self.services, self.prefix = cls, ctx, services, prefix
        self.timeout = timeout
        self.owned = procs.Owned()

    def __enter__(self) -> tuple[Supervisor, float, float]:
        try:
            workdir = self.ctx.workdir(f"{self.prefix}-{self.cls.name}")
            self.sup = self.cls(self.ctx.peers, workdir)
            t0 = self.sup.start(self.owned, self.services)
            t_up = self.sup.wait_up(self.timeout)
        except BaseException:
            self.__exit__(*sys.exc_info())
            raise
        return self.sup, t0, t_up

    def __exit__(self, *exc: object) -> None:
        self.owned.close()
        if hasattr(self, "sup"):
            from bench.core import rmtree_quiet

            rmtree_quiet(self.sup.dir)


def skip_reason(cls: type[Supervisor], ctx: Any) -> str:
    """Why a supervisor cannot run ('' if it can)."""
    return cls.check(ctx.peers, ctx.roost_ok, ctx.roost_reason)


__all__ = ["ALL", "Service", "Skip", "Supervisor", "available", "idle_services", "run_one"]
