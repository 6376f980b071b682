"""Stage 1 and 2 of `roost init`: from the kernel's first exec to supervising the machine.

By the time this module runs, roost.early has blocked every signal, so a
request sent in the first milliseconds waits as a pending signal. The order
after that is chosen so that requests are heard as early as possible:

1. the reactor's handlers for every request signal (pending ones arrive now);
2. the abstract control socket @roost/control (no filesystem needed);
3. the API filesystems, where missing, then /run/roost/control as well;
4. hostname, console, Ctrl-Alt-Del routed to PID 1 as SIGINT;
5. the configuration, then the services.

Between steps roost looks at its sockets and signals without waiting. A
request heard at any point is acknowledged at once and wins: the steps left
are skipped but for the API filesystems that stage 3 needs (services not yet
started never start; starting ones are stopped) and stage 3 (shutdown.py)
begins.

PID 1 never exits: every step is fenced, and a failure roost cannot get past
ends in the configured emergency shell and then a reboot (or the configured
fatal action), not in a kernel panic.
"""

from __future__ import annotations

import _signal
import os
import sys

from roost import __version__
from roost.config import DEFAULT_DIRECTORY
from roost.control.commands import Dispatcher
from roost.core import sigs
from roost.kernel import console, linux
from roost.kernel.loop import Loop
from roost.kernel.reaper import Reaper
from roost.system import emergency, mounts, power

TYPE_CHECKING = False
if TYPE_CHECKING:
    from roost.control.server import ControlServer
    from roost.core.exits import ExitStatus
    from roost.core.model import Config, Settings
    from roost.system.shutdown import Shutdown
    from roost.up import Manager

RUN_CONTROL = "/run/roost/control"
USAGE = """\
usage: roost init [-c DIR] [-v]

Run as the system's init (PID 1 of the machine or of a PID namespace): mount
the API filesystems, start the services of DIR (default /etc/roost), take
poweroff/reboot/halt requests at any moment, and shut down to a clean root.
"""


class BootOptions:
    """The command line of `roost init`; unknown words (from the kernel) are kept, not fatal."""

    __slots__ = ("config", "help", "ignored", "verbose")

    def __init__(self) -> None:
        self.config: str | None = None
        self.verbose = False
        self.help = False
        self.ignored: list[str] = []


def parse(args: list[str]) -> BootOptions:
    """Parse leniently: the kernel passes init whatever it did not understand."""
    opts = BootOptions()
    items = list(args)
    while items:
        arg = items.pop(0)
        if arg in ("-c", "--config") and items:
            opts.config = items.pop(0)
        elif arg.startswith("--config="):
            opts.config = arg.partition("=")[2]
        elif arg in ("-v", "--verbose"):
            opts.verbose = True
        elif arg in ("-h", "--help"):
            opts.help = True
        else:
            opts.ignored.append(arg)
    return opts


def _request_signals() -> set[int]:
    return {*power.SIGNAL_REQUESTS, power.CTRL_ALT_DEL}


class System:
    """roost as init: the boot sequence, the request queue, and the hand-over to stage 3."""

    def __init__(self, opts: BootOptions):
        self.opts = opts
        self.scope = linux.pid1_scope() or linux.NAMESPACE
        self.loop = Loop()
        self.reaper = Reaper()
        self.reaper.on_orphan = self._orphan
        self.servers: list[ControlServer] = []
        self.manager: Manager | None = None
        self.settings: Settings | None = None
        self.kind: str | None = None
        self.force = False
        self.booting = True
        self.services_down = False
        self.baseline: set[int] = set()
        self.directory = opts.config or os.environ.get("ROOST_CONFIG") or DEFAULT_DIRECTORY
        # Power requests and ping from the first moment; the rest once the supervisor runs.
        self.dispatcher = Dispatcher(None, power=self.request, directory=self.directory)

    def current_settings(self) -> Settings | None:
        """The settings in force: the supervisor's (they follow reloads), else the boot's."""
        return self.manager.config.settings if self.manager is not None else self.settings

    # -- requests ------------------------------------------------------------------

    def request(self, kind: str, source: str, force: bool = False) -> dict[str, object]:
        """Queue a power request (the first one wins); return the acknowledgement."""
        if kind not in power.KINDS:
            raise ValueError(f"unknown request {kind!r}")
        first = self.kind is None
        if first:
            self.kind = kind
            self.force = force
            when = " during boot: the rest of the start sequence is abandoned" if (
                self.booting) else ""
            console.say(f"{kind} requested by {source}{when}")
            self._begin_shutdown(f"{kind} requested")
        else:
            console.say(f"{kind} requested by {source}: already carrying out {self.kind}")
        return {"accepted": kind, "carrying_out": self.kind, "during_boot": self.booting,
                "first": first}

    def _begin_shutdown(self, reason: str) -> None:
        manager = self.manager
        if manager is None or self.force:
            self.services_down = True
            if manager is not None:
                manager.stopping = True
                if manager.announcer is not None:
                    manager.announcer.stop()
            return
        settings = manager.config.settings
        self.loop.call_later(settings.shutdown_timeout, self._shutdown_overdue)
        manager.shutdown(reason)

    def _shutdown_overdue(self) -> None:
        if not self.services_down:
            timeout = self.manager.config.settings.shutdown_timeout if self.manager else 0
            console.say(f"services still stopping after {timeout:g}s: going on without them")
            self.services_down = True

    def _services_stopped(self) -> None:
        self.services_down = True
        if self.kind is None:
            # `roost shutdown` stops every service and leaves; for init leaving means power off.
            console.say("every service stopped on request: powering off")
            self.kind = power.POWEROFF

    def on_signal(self, signum: int) -> None:
        """Reap on CHLD, reload on HUP, queue a request for the request signals."""
        if signum == _signal.SIGCHLD:
            self.reaper.drain()
        elif signum in power.SIGNAL_REQUESTS:
            self.request(power.SIGNAL_REQUESTS[signum], sigs.name(signum))
        elif signum == power.CTRL_ALT_DEL:
            settings = self.current_settings()
            action = settings.ctrl_alt_del if settings else power.REBOOT
            if action == "ignore":
                console.say("Ctrl-Alt-Del ignored (ctrl_alt_del = \"ignore\")")
            else:
                self.request(action, f"{sigs.name(signum)} (Ctrl-Alt-Del)")
        elif signum == _signal.SIGHUP and self.manager is not None:
            self.manager.on_signal(signum)
        else:
            console.debug(f"{sigs.name(signum)} ignored")

    def _orphan(self, pid: int, status: ExitStatus) -> None:
        console.debug(f"reaped orphan {pid} ({status.describe()})")

    # -- the control socket ----------------------------------------------------------

    def _listen(self, address: str) -> None:
        from roost.control.server import ControlServer  # noqa: PLC0415 - lazy (start-up): signals first

        try:
            self.servers.append(ControlServer(self.loop, address, self.dispatcher))
        except Exception as exc:  # noqa: BLE001 - requests still arrive by signal
            console.say(f"cannot listen on {address}: {exc}")

    def poll(self) -> None:
        """Serve whatever is ready on the sockets and signals, without waiting."""
        for _ in range(3):
            self.loop.run_once(0)

    # -- stage 1 ---------------------------------------------------------------------------

    def _step(self, what: str, fn: object, always: bool = False) -> None:
        """Run one boot step; a failure is reported and the boot goes on.

        Once a request is queued the remaining steps are skipped, except those stage 3
        needs (`always`): the console and the API filesystems (/proc above all: without
        it roost could not even tell a machine from a namespace, or read the mount table).
        """
        if self.kind is not None and not always:
            return
        try:
            fn()  # type: ignore[operator]
        except Exception:  # noqa: BLE001 - one failed step must not stop the boot
            console.error_trace(f"boot step {what!r}")
        self.poll()

    def _console(self) -> None:
        """On a machine: 0, 1 and 2 on /dev/console, faults reported there."""
        import faulthandler  # noqa: PLC0415 - lazy (start-up): a C module, only here

        if self.scope == linux.MACHINE:
            console.attach()
        try:
            faulthandler.enable(file=2, all_threads=True)
        except (OSError, ValueError, RuntimeError):
            pass

    def _mount_api(self) -> None:
        made = []
        for target, fstype, source, flags, data in mounts.API_MOUNTS:
            if target == "/sys/fs/cgroup" and self.scope != linux.MACHINE:
                continue  # a namespace keeps the cgroup tree it was given
            if target == "/dev" and self.scope != linux.MACHINE:
                continue
            if mounts.mount_api(target, fstype, source, flags, data):
                made.append(target)
            if target == "/proc":
                self.scope = linux.pid1_scope() or linux.NAMESPACE
        if made:
            console.say("mounted " + " ".join(made))

    def _hostname(self) -> None:
        try:
            with open("/etc/hostname") as f:
                name = f.read().split("#", 1)[0].strip()
        except OSError:
            return
        if not name:
            return
        if self.scope != linux.MACHINE and linux._ns_inode("uts") == linux.PROC_UTS_INIT_INO:
            return  # the host's hostname: not ours to set
        linux.sethostname(name)
        console.debug(f"hostname {name}")

    def _ctrl_alt_del(self) -> None:
        if self.scope == linux.MACHINE:
            linux.reboot(linux.RB_DISABLE_CAD)  # the kernel sends SIGINT to PID 1 instead

    def _load(self) -> tuple[Config, dict[str, str]]:
        """The configuration, less the services its errors reach; those, with their errors."""
        from roost.config.errors import ConfigInvalid, degrade  # noqa: PLC0415 - lazy (start-up): after the sockets
        from roost.config.reader import read  # noqa: PLC0415 - lazy (start-up): after the sockets

        try:
            config, errors = read(self.directory, self.reaper)
        except ConfigInvalid as exc:  # the reader itself failed: nothing was read
            from roost.core.model import Config as ConfigType  # noqa: PLC0415 - lazy (start-up): errors only
            from roost.core.model import Settings  # noqa: PLC0415 - lazy (start-up): errors only

            config = ConfigType(os.path.abspath(self.directory), {}, Settings())
            errors = exc.errors
        self.settings = config.settings
        if not errors:
            return config, {}
        for error in errors:
            console.say(str(error))
        # One bad file must not cost the machine its other services (sshd, a getty):
        # only what the errors reach is set aside, shown failed by `roost status`.
        broken = degrade(config, errors)
        console.say(f"{len(errors)} configuration error{'s' if len(errors) > 1 else ''} in "
                    f"{self.directory}: {len(config.services)} services start, "
                    f"{len(broken)} set aside (fix them, then `roost reload`)")
        return config, broken

    def _supervise(self, config: Config, broken: dict[str, str]) -> None:
        from roost.config.errors import ConfigInvalid  # noqa: PLC0415 - lazy (start-up): after the sockets
        from roost.up import Manager  # noqa: PLC0415 - lazy (start-up): after the sockets listen

        address = self.servers[0].address if self.servers else power.SYSTEM_CONTROL

        def manager_of(services: Config) -> Manager:
            return Manager(services, control=address, pid1=True, loop=self.loop,
                           reaper=self.reaper, dispatcher=self.dispatcher, broken=broken)

        try:
            manager = manager_of(config)
        except ConfigInvalid as exc:  # more services than descriptors: none is set up
            console.say(str(exc))
            broken.update(dict.fromkeys(config.services, str(exc.errors[0].message)))
            config.services = {}
            manager = manager_of(config)
        manager.on_stopped.append(self._services_stopped)
        if self.servers:
            manager.control = self.servers[0]
            for server in self.servers:
                server.control_gid = manager.control_gid
        self.manager = manager
        if broken and not config.services:
            console.say(f"no service started: nothing in {self.directory} can start")
            self.emergency_shell(wait=False)

    def boot(self) -> None:
        """Stage 1: everything before the services."""
        console.configure(timestamps=True, verbose=self.opts.verbose)
        self.loop.handle_signals(_request_signals() | {_signal.SIGCHLD, _signal.SIGHUP,
                                                       _signal.SIGQUIT},
                                 self.on_signal, ignore=(_signal.SIGPIPE,))
        self._listen(power.SYSTEM_CONTROL)
        self.poll()
        self.baseline = {m.ident for m in mounts.table()}
        self._step("console", self._console, always=True)
        self._step("mounts", self._mount_api, always=True)
        # Only now can the scope be told: it is read from /proc.
        console.say(f"roost {__version__} starting as PID 1 of the "
                    f"{'machine' if self.scope == linux.MACHINE else 'PID namespace'}"
                    + (f" (ignored arguments: {' '.join(self.opts.ignored)})"
                       if self.opts.ignored else ""))
        if self.scope == linux.MACHINE:
            self._step("console", self._console, always=True)  # again: from the devtmpfs
        if mounts.mounted("/run") is not None:
            self._step("control socket", lambda: self._listen(RUN_CONTROL))
        self._step("hostname", self._hostname)
        self._step("ctrl-alt-del", self._ctrl_alt_del)
        loaded: list[tuple[Config, dict[str, str]]] = []
        self._step("configuration", lambda: loaded.append(self._load()))
        if loaded:
            self._step("supervisor", lambda: self._supervise(*loaded[0]))

    def serve(self) -> None:
        """Stage 2: start the services and supervise until a request has stopped them."""
        manager = self.manager
        if self.kind is None and manager is not None:
            console.say(f"starting {len(manager.supervisor.services)} services from "
                        f"{manager.config.directory}")
            manager.supervisor.start_all()
            # Under another manager (a container's engine), roost says when it is ready.
            manager.announce()
        self.booting = False
        if self.kind is None and manager is None:
            console.say("no supervisor: waiting for a power request")
        while not self.services_down:
            self.loop.run_once()

    def run(self) -> int:
        """Boot, supervise, shut down. On a machine this never returns."""
        try:
            self.boot()
            self.serve()
        except BaseException:  # noqa: BLE001 - PID 1 must reach stage 3 whatever happened
            console.error_trace("roost init")
            return self.fatal()
        return self._stage3().run(self.kind or power.POWEROFF)

    # -- when all else fails ---------------------------------------------------------------

    def emergency_shell(self, wait: bool = True) -> None:
        """Run the emergency shell on the console (if there is one); with `wait`, until it exits."""
        settings = self.current_settings()
        argv = emergency.shell_argv(settings.emergency_shell if settings else None, self.scope)
        if argv is not None:
            emergency.run(argv, self.reaper, own_console=self.scope == linux.MACHINE, wait=wait)

    def fatal(self) -> int:
        """A failure roost cannot supervise through: emergency shell, then the fatal action."""
        try:
            self.emergency_shell(wait=True)
        except BaseException:  # noqa: BLE001
            console.error_trace("emergency shell")
        settings = self.current_settings()
        kind = self.kind or (settings.fatal_action if settings else power.REBOOT)
        return self._stage3().run(kind)

    def _stage3(self) -> Shutdown:
        from roost.system.shutdown import Shutdown  # noqa: PLC0415 - lazy (memory): stage 3 only

        manager = self.manager

        def close_logs() -> None:
            if manager is not None:
                for rt in list(manager.supervisor.services.values()):
                    rt.log.close(self.loop)

        return Shutdown(self.loop, self.reaper, baseline=self.baseline,
                        settings=self.current_settings(), close_logs=close_logs,
                        servers=self.servers)


def main(args: list[str]) -> int:
    """`roost init`: refuse unless PID 1, then boot, supervise and shut down."""
    opts = parse(args)
    if opts.help:
        sys.stdout.write(USAGE)
        return 0
    if os.getpid() != 1 and args in (["0"], ["6"]):
        # SysV's `init 0` and `init 6`, from a shell: ask the running init.
        from roost.system import poweroff  # noqa: PLC0415 - lazy (start-up): a client only

        return poweroff.main(power.POWEROFF if args == ["0"] else power.REBOOT, [])
    if os.getpid() != 1:
        sys.stderr.write("roost init: must run as PID 1 (of the machine, or of a PID namespace: "
                         "unshare --pid --fork --mount-proc); to supervise services as an "
                         "ordinary process use `roost up`\n")
        return 2
    return System(opts).run()
