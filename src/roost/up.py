"""`roost up`: reactor, reaper, tracker, services and control socket, wired together.

The composition root of the supervisor role. `roost up` builds one Manager and
runs it until a shutdown completes; `roost init` (system/boot.py) and `roost run
-c` (container/sidecars.py) build one too, on their own reactor and reaper. As
PID 1 of a PID namespace every orphan of the namespace comes back to it;
otherwise it makes itself a child subreaper so orphans of its services do, and
gives its services a parent-death signal so they do not outlive it by accident.
"""

from __future__ import annotations

import _signal
import os
import resource
import sys

from roost.config import DEFAULT_DIRECTORY
from roost.config.errors import ConfigInvalid
from roost.config.reader import load as load_config
from roost.config.reader import read as read_config
from roost.control.commands import Dispatcher
from roost.control.protocol import default_address, describe_reload
from roost.control.server import AddressInUse, ControlServer
from roost.core import sigs
from roost.core.machine import RUNNING
from roost.kernel import accounts, console, prctl
from roost.kernel.loop import Loop
from roost.kernel.reaper import Reaper
from roost.supervise.logs import LogSettings
from roost.supervise.supervisor import Supervisor
from roost.tracking import Tracker

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from roost.core.exits import ExitStatus
    from roost.core.model import Config, Settings
    from roost.kernel.ready import ReadyFile
    from roost.kernel.syslog import Syslog
    from roost.supervise.announce import Announcer

SHUTDOWN_SIGNALS = frozenset({_signal.SIGTERM, _signal.SIGINT, _signal.SIGQUIT})
HANDLED_SIGNALS = SHUTDOWN_SIGNALS | {_signal.SIGHUP, _signal.SIGCHLD, _signal.SIGUSR1,
                                      _signal.SIGUSR2}


class Manager:
    """One roost supervising one configuration directory."""

    def __init__(self, config: Config, *, control: str, log_dir: str | None = None,
                 log_console: bool | None = None, pid1: bool | None = None,
                 loop: Loop | None = None, reaper: Reaper | None = None,
                 dispatcher: Dispatcher | None = None, broken: dict[str, str] | None = None):
        self.config = config
        self.pid1 = os.getpid() == 1 if pid1 is None else pid1
        self.loop = loop or Loop()
        self.reaper = reaper or Reaper()
        if reaper is None:
            self.reaper.on_orphan = self._orphan_reaped
        settings = config.settings
        directory = log_dir or settings.log_dir
        if log_console is None:
            log_console = settings.log_console if settings.log_console is not None else True
        self.log_settings = LogSettings(directory, settings.log_max_bytes, settings.log_keep,
                                        log_console, syslog=_syslog(settings))
        self.nofile = _raise_nofile()
        self.supervisor = Supervisor(
            config, self.loop, self.reaper, self.log_settings, Tracker(self.loop),
            # Outside PID 1 a service should not outlive a roost that dies abruptly.
            pdeathsig=0 if self.pid1 else _signal.SIGKILL,
            nofile=self.nofile, broken=broken)
        self.control_address = control
        self.control: ControlServer | None = None
        self.control_gid = _group_id(settings.control_group)
        self.stopping = False
        self.forced = False  # a signal while stopping sent SIGKILL to what remained
        self.exit_code = 0
        self.on_stopped: list[Callable[[], None]] = []
        # Whoever started roost may want to know when it is ready (announce): the socket
        # is theirs to roost alone, so nothing roost starts inherits it.
        self.notify_socket = os.environ.pop("NOTIFY_SOCKET", None) or None
        self.announcer: Announcer | None = None
        # `roost init` hands over the dispatcher its sockets already serve.
        self.dispatcher = dispatcher or Dispatcher(self)
        self.dispatcher.host = self

    @property
    def directory(self) -> str:
        """The configuration directory being supervised."""
        return self.config.directory

    def open_control(self) -> None:
        """Bind the control socket (raises AddressInUse if another roost has it)."""
        self.control = ControlServer(self.loop, self.control_address, self.dispatcher,
                                     control_gid=self.control_gid)

    def run(self, ready_fd: int | None = None, ready_file: ReadyFile | None = None) -> int:
        """Start every service and supervise until shut down; return the exit status.

        `ready_fd` and `ready_file` are --ready-fd's and --ready-file's (see announce).
        """
        if not self.pid1:
            prctl.become_subreaper("daemons that fork away will not come back to roost")
        if self.control is None:
            self.open_control()
        self.loop.handle_signals(HANDLED_SIGNALS, self.on_signal)
        console.say(f"supervising {len(self.supervisor.services)} services from "
                    f"{self.config.directory}; control on {self.control_address}")
        self.supervisor.start_all()
        self.announce(ready_fd, ready_file)
        self.loop.run()
        self.close()
        return self.exit_code

    def announce(self, ready_fd: int | None = None, ready_file: ReadyFile | None = None) -> None:
        """Once every service was asked up: tell whoever started roost when it is ready.

        Through $NOTIFY_SOCKET, a --ready-fd descriptor, a --ready-file; with none of
        them nothing is loaded and nothing watches the services' changes.
        """
        if self.notify_socket is None and ready_fd is None and ready_file is None:
            return
        from roost.supervise.announce import Announcer  # noqa: PLC0415 - lazy (memory): only when someone waits for roost

        self.announcer = Announcer(self.supervisor, notify=self.notify_socket,
                                   ready_fd=ready_fd, ready_file=ready_file)
        self.announcer.begin()

    def close(self) -> None:
        """Release the control socket and undo what tracking set up (its cgroups)."""
        if self.announcer is not None:
            self.announcer.close()
        if self.control is not None:
            self.control.close()
            self.control = None
        self.supervisor.tracker.close()

    def on_signal(self, signum: int) -> None:
        """SIGCHLD reaps; TERM, INT and QUIT shut down (again: force, leave); HUP reloads."""
        if signum == _signal.SIGCHLD:
            self.reaper.drain()
        elif signum in SHUTDOWN_SIGNALS:
            self._shutdown_signal(signum)
        elif signum == _signal.SIGHUP:
            try:
                summary = self.reload()
                console.say(f"reloaded on SIGHUP: {describe_reload(summary)}")
            except ConfigInvalid as exc:
                console.say(f"reload refused, the running configuration stays:\n{exc}")
        else:
            console.debug(f"{sigs.name(signum)} ignored")

    def _shutdown_signal(self, signum: int) -> None:
        """The first shuts down in order; one while stopping forces it; one more leaves."""
        name = sigs.name(signum)
        if not self.stopping:
            self.shutdown(f"{name} received")
        elif not self.forced:
            self.force_stop(f"{name} received while stopping")
        else:
            left = [n for n, rt in self.supervisor.services.items()
                    if rt.machine.state in RUNNING]
            console.say(f"{name} received again: leaving now, without waiting for "
                        + (", ".join(left) or "anything"))
            self.exit_code = 1
            self.loop.stop()

    def force_stop(self, reason: str) -> None:
        """Kill (SIGKILL) every process of every service still running: no stop_timeout waited."""
        self.forced = True
        left = [n for n, rt in self.supervisor.services.items() if rt.machine.state in RUNNING]
        console.say(f"{reason}: forcing the stop, SIGKILL to "
                    + (", ".join(left) if left else "nothing (all are down)"))
        for name in left:
            self.supervisor.tracker.signal_all(name, _signal.SIGKILL)

    def shutdown(self, reason: str) -> None:
        """Stop every service in reverse dependency order, then leave the loop."""
        if self.stopping:
            console.say(f"{reason}: already shutting down")
            return
        self.stopping = True
        if self.announcer is not None:
            self.announcer.stop()
        console.say(f"{reason}: stopping all services")
        self.supervisor.stop_all(then=self._stopped)

    def _stopped(self) -> None:
        console.say("all services stopped")
        for hook in self.on_stopped:
            hook()
        self.loop.stop()

    def reload(self) -> dict[str, list[str]]:
        """Read the configuration again; apply the differences, or raise ConfigInvalid."""
        announcer = self.announcer
        if announcer is None:
            return self._reload()
        announcer.reloading()
        try:
            return self._reload()
        finally:
            announcer.reloaded()

    def _reload(self) -> dict[str, list[str]]:
        new = load_config(self.config.directory, self.reaper)
        # The services first: they may refuse the whole reload, and then nothing changed.
        summary = self.supervisor.reload(new, log_files=bool(new.settings.log_dir))
        old_settings = self.config.settings
        settings = new.settings
        if settings.control != old_settings.control:
            console.say("reload: a new control address takes effect at the next start")
        self.control_gid = _group_id(settings.control_group)
        if self.control is not None:
            self.control.control_gid = self.control_gid
        if (settings.log_dir, settings.log_max_bytes, settings.log_keep) != (
                old_settings.log_dir, old_settings.log_max_bytes, old_settings.log_keep):
            self.log_settings.directory = settings.log_dir or self.log_settings.directory
            self.log_settings.max_bytes = settings.log_max_bytes
            self.log_settings.keep = settings.log_keep
            for rt in self.supervisor.services.values():
                rt.log.close_file()
        if (settings.log_syslog, settings.log_syslog_facility) != (
                old_settings.log_syslog, old_settings.log_syslog_facility):
            if self.log_settings.syslog is not None:
                self.log_settings.syslog.close()
            self.log_settings.syslog = _syslog(settings)
        self.config = new
        return summary

    def _orphan_reaped(self, pid: int, status: ExitStatus) -> None:
        console.say(f"reaped orphan {pid} ({status.describe()})")


def up(directory: str, *, control: str | None, log_dir: str | None, quiet: bool,
       ready_fd: str | None = None, ready_file: str | None = None) -> int:
    """`roost up`: check the configuration, bind the control socket, supervise until shutdown."""
    fd: int | None = None
    file: ReadyFile | None = None
    if ready_fd is not None or ready_file is not None:
        from roost.kernel import ready  # noqa: PLC0415 - lazy (memory): --ready-fd and --ready-file only

        try:
            fd = ready.ready_fd(ready_fd) if ready_fd is not None else None
            file = ready.ReadyFile(ready_file) if ready_file is not None else None
        except ready.Refused as exc:
            print(f"roost up: {exc}", file=sys.stderr)
            return 2
    config, errors = read_config(directory)
    for warning in config.warnings:
        print(f"roost: warning: {warning}", file=sys.stderr)
    if errors:
        for error in errors:
            print(error, file=sys.stderr)
        print(f"roost: {len(errors)} configuration error{'s' if len(errors) > 1 else ''}; "
              "nothing started", file=sys.stderr)
        return 1
    address = control or config.settings.control or default_address()
    try:
        manager = Manager(config, control=address, log_dir=log_dir,
                          log_console=False if quiet else None)
    except ConfigInvalid as exc:
        print(f"{exc}\nroost: nothing started", file=sys.stderr)
        return 1
    try:
        manager.open_control()
    except (AddressInUse, OSError) as exc:
        print(f"roost: cannot listen on {address}: {exc}", file=sys.stderr)
        return 1
    return manager.run(fd, file)


def _syslog(settings: Settings) -> Syslog | None:
    """The syslog socket service output also goes to, if `log_syslog` asks for one."""
    if not settings.log_syslog:
        return None
    from roost.kernel.syslog import Syslog  # noqa: PLC0415 - lazy (memory): `log_syslog` only
    return Syslog(settings.log_syslog, settings.log_syslog_facility)


def _raise_nofile() -> tuple[int, int]:
    """Lift roost's own fd limit to the hard limit; return the original for children."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (OSError, ValueError):
            pass
    return soft, hard


def _group_id(group: str | None) -> int | None:
    if group is None:
        return None
    try:
        return accounts.group_id(group)
    except accounts.UnknownAccount:
        # The configuration check names an unknown group; here nobody gets its rights.
        return None


_VALUES = {"-c": "config", "--config": "config", "--log-dir": "log_dir",
           "--control": "control", "--ready-fd": "ready_fd", "--ready-file": "ready_file"}
_FLAGS = {"--quiet": "quiet", "-v": "verbose", "--verbose": "verbose"}


def main(args: list[str]) -> int | None:
    """Run `roost up ARGS` from a well-formed line; None leaves the line to argparse.

    The client's command line (roost.cli and its grammar) and argparse would stay in the
    supervisor's memory for as long as it runs (argparse alone about 0.5 MB): the entry
    point comes here first. `--help` and anything not recognised go to argparse, for its
    help and its error messages.
    """
    options: dict[str, str | bool | None] = {
        "config": None, "log_dir": None, "control": None, "ready_fd": None,
        "ready_file": None, "quiet": False, "verbose": False}
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        name, eq, value = arg.partition("=")
        if name in _VALUES:
            if not eq:
                if not rest or rest[0].startswith("-"):
                    return None
                value = rest.pop(0)
            options[_VALUES[name]] = value
        elif arg in _FLAGS:
            options[_FLAGS[arg]] = True
        else:
            return None
    console.configure(timestamps=True, verbose=bool(options["verbose"]))
    directory = options["config"] or os.environ.get("ROOST_CONFIG") or DEFAULT_DIRECTORY
    return up(str(directory), control=_text(options["control"]),
              log_dir=_text(options["log_dir"]), quiet=bool(options["quiet"]),
              ready_fd=_text(options["ready_fd"]), ready_file=_text(options["ready_file"]))


def _text(value: str | bool | None) -> str | None:
    return value if isinstance(value, str) else None
