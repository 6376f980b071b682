"""The command line's grammar: each subcommand, its options, its help and its example.

Built only when a command line is not `roost up`'s well-formed fast path (cli.py):
argparse would otherwise stay in the supervisor's memory for as long as it runs.
"""

from __future__ import annotations

from roost import __version__
from roost.config import DEFAULT_DIRECTORY

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import NoReturn

USAGE_ERROR = 2

SYSTEM_COMMANDS = {
    "init": "run as the system's init, PID 1 (see docs/system-init.md)",
    "poweroff": "ask init to stop everything and power off",
    "reboot": "ask init to stop everything and reboot",
    "halt": "ask init to stop everything and halt",
}


# Each client subcommand: its one-line help, what it does, and an example.
HELP = {
    "up": ("supervise a configuration directory in the foreground",
           "Start every autostart service of DIR in dependency order and supervise them in the\n"
           "foreground until SIGTERM, SIGINT or `roost shutdown`. A second signal while\n"
           "stopping kills (SIGKILL) whatever remains; a third makes roost leave at once.\n"
           "Under a manager that gave it $NOTIFY_SOCKET, roost says READY=1 once every\n"
           "autostart service is up, done or failed, STATUS= with counts, STOPPING=1 at\n"
           "shutdown.",
           "roost up -c ./services --log-dir ./logs\n"
           "  roost up -c ./services --ready-file /run/roost-ready"),
    "check": ("validate a configuration directory, or one service file",
              "Read every service file (NAME.toml) and unit (NAME.service, with its drop-ins)\n"
              "of DIR and print each error, and a warning for each file roost does not read;\n"
              "exit 0 when the whole configuration is valid, 1 when it is not. Given a FILE,\n"
              "check that one. Nothing is started.",
              "roost check /etc/roost\n  roost check /etc/roost/web.service"),
    "status": ("show the state of services",
               "Without names, a table of every service. With names, each one in detail: its\n"
               "command, since when it is in its state, its processes and its last 10 log lines\n"
               "(those three for root and the control group). Exit 0 when every named service\n"
               "(or, with no names, every wanted one) is up or done, 3 otherwise.\n"
               "With --check, a probe: print nothing and exit 0 when every wanted service is\n"
               "up or done and not unhealthy; else one line saying what is not, and exit 3.",
               "roost status\n  roost status web db\n  roost status --json\n"
               "  roost status --check || echo not ready"),
    "start": ("start services (and what they require)",
              "Start the services and, first, everything they require. Waits until every\n"
              "service it touched has settled, prints each, and exits 0 if all are up (or\n"
              "done, for a oneshot), 1 if not.",
              "roost start web && curl http://localhost/"),
    "stop": ("stop services (and what requires them)",
             "Stop the services and, first, everything that requires them. Waits until none of\n"
             "them has a process left, prints each, and exits 0 if all are down, 1 if not.",
             "roost stop db"),
    "restart": ("restart services (and what runs requiring them)",
                "Stop the services and every running service that requires them, then start\n"
                "them all again in order. Waits until all of them have settled, prints each, and\n"
                "exits 0 if all are up (or done), 1 if not.",
                "roost restart db && curl http://localhost/"),
    "signal": ("send a signal to a service's main process",
               "Send SIG (a name, with or without SIG, or a number) to the main process of each\n"
               "service. Root and the control group only.",
               "roost signal HUP web"),
    "log": ("show what the services wrote",
            "Print the last lines each service wrote (all services by default), interleaved\n"
            "by time, oldest first; --since and --until keep a window of time; with -f, keep\n"
            "printing new lines until interrupted. Root and the control group only.",
            "roost log -n 50 -f web db\n  roost log --since 10m"),
    "events": ("follow the services' states as they change",
               "Print each service's state now, then every change of state as it happens, one\n"
               "line each (JSON objects with --json), until interrupted or roost exits. Any\n"
               "user may ask.",
               "roost events --json web db"),
    "tree": ("show every process of each service",
             "Show every process of each service (* marks the main one), how roost tracks\n"
             "them, and the orphans it adopted. Root and the control group only.",
             "roost tree web"),
    "analyze": ("picture the last start of every service, or its critical chain",
                "`plot` (the default) writes an SVG with a bar per service from its last start\n"
                "until it was up, done or failed, and a line from each requirement to what waited\n"
                "for it. `critical-chain [SERVICE]` prints what SERVICE (default: the last to\n"
                "settle, of those never restarted) waited for, link by link. Any user may ask.",
                "roost analyze -o boot.svg\n  roost analyze critical-chain web"),
    "completion": ("print a shell's completion script",
                   "Print the completion script for bash, zsh or fish: commands, options, and\n"
                   "the names of the running roost's services.",
                   'eval "$(roost completion bash)"'),
    "reload": ("apply a changed configuration directory, or reload services",
               "With no SERVICE: read the configuration directory again; if all of it is valid,\n"
               "add, remove and restart only the services that changed. If not, nothing\n"
               "changes. With SERVICEs: run each one's exec_reload (or send its reload_signal)\n"
               "while it stays up; waits for the commands, exits 1 if one failed.",
               "roost reload\n  roost reload web"),
    "shutdown": ("stop every service in order, then exit",
                 "Stop every service in reverse dependency order, then make roost exit.",
                 "roost shutdown"),
}

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def moment(text: str) -> float:
    """A UNIX time from `30s`, `10m`, `2h`, `1d` (that long ago) or a local date and time."""
    import argparse  # noqa: PLC0415 - lazy (memory): loaded by the parser that calls this
    import datetime  # noqa: PLC0415 - lazy (start-up): `log --since` only
    import time  # noqa: PLC0415 - lazy (start-up): `log --since` only

    number = text[:-1]
    if text[-1:] in _UNITS and number.replace(".", "", 1).isdigit():
        return time.time() - float(number) * _UNITS[text[-1]]
    try:
        return datetime.datetime.fromisoformat(text).timestamp()
    except ValueError:
        pass
    try:
        clock = datetime.time.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected 30s, 10m, 2h, 1d, or a time like 17:05 or "
            "2026-12-03 17:05:30") from None
    return datetime.datetime.combine(datetime.date.today(), clock).timestamp()


CONTROL_HELP = ("control socket: a path or @abstract (default: $ROOST_CONTROL, else "
                "/run/roost/control for root; for other users their own "
                "$XDG_RUNTIME_DIR/roost/control, else /tmp/roost-UID/control, then "
                "the system's /run/roost/control)")


def parser() -> argparse.ArgumentParser:
    """The whole command line but `roost run`'s, for argparse to parse and to explain."""
    import argparse  # noqa: PLC0415 - lazy (memory): argparse must not stay in a supervisor

    class Parser(argparse.ArgumentParser):
        def error(self, message: str) -> NoReturn:
            """Bad usage: one line, and where the help is."""
            self.exit(USAGE_ERROR, f"{self.prog}: {message} (see `{self.prog} --help`)\n")

    parser = Parser(
        prog="roost", description="A Linux init and service supervisor.",
        epilog="`roost COMMAND --help` describes each command; `roost run --help` the "
               "container init's options.")
    parser.add_argument("--version", action="version", version=f"roost {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    # Listed for the help only: `roost run` is dispatched before this parser exists.
    sub.add_parser("run", help="run CMD as a container's init: roost run [options] -- CMD",
                   add_help=False)

    def command(name: str) -> argparse.ArgumentParser:
        text, description, example = HELP[name]
        return sub.add_parser(name, help=text, description=description,
                              epilog=f"example:\n  {example}",
                              formatter_class=argparse.RawDescriptionHelpFormatter)

    def control(p: argparse.ArgumentParser) -> None:
        p.add_argument("--control", metavar="ADDR", help=CONTROL_HELP)

    p = command("up")
    p.add_argument("-c", "--config", metavar="DIR", help=f"service directory (default: "
                   f"$ROOST_CONFIG or {DEFAULT_DIRECTORY})")
    p.add_argument("--log-dir", metavar="DIR", help="write service logs to files in DIR "
                   "(default: log_dir in roost.toml, else none)")
    p.add_argument("--quiet", action="store_true", help="do not copy service output to stdout")
    p.add_argument("-v", "--verbose", action="store_true", help="log more of what roost does")
    p.add_argument("--ready-fd", metavar="N", help="write a newline to descriptor N, then "
                   "close it, once every autostart service is up, done or failed (s6)")
    p.add_argument("--ready-file", metavar="PATH", help="a file that exists while every "
                   "wanted service is up (or done) and not unhealthy, for a container probe; "
                   "its directory must be writable by root or roost alone")
    control(p)

    p = command("check")
    p.add_argument("directory", nargs="?", metavar="DIR|FILE",
                   help=f"service directory or file (default: $ROOST_CONFIG or "
                   f"{DEFAULT_DIRECTORY})")

    p = command("status")
    p.add_argument("services", nargs="*", metavar="SERVICE", help="(default: every service)")
    p.add_argument("--json", action="store_true", help="print the status records as JSON")
    p.add_argument("--check", action="store_true", help="a readiness probe: silent exit 0 "
                   "when every wanted service is ready, else one line and exit 3")
    control(p)

    for verb in ("start", "stop", "restart"):
        p = command(verb)
        p.add_argument("services", nargs="+", metavar="SERVICE")
        p.add_argument("--no-wait", action="store_true",
                       help="return once roost has the request, without waiting")
        p.add_argument("--timeout", type=float, default=90.0, metavar="SECONDS",
                       help="how long to wait for every service to settle (default: "
                            "%(default)g); nothing is cancelled when it runs out")
        control(p)

    p = command("signal")
    p.add_argument("signal", metavar="SIG")
    p.add_argument("services", nargs="+", metavar="SERVICE")
    control(p)

    p = command("log")
    p.add_argument("services", nargs="*", metavar="SERVICE", help="(default: every service)")
    p.add_argument("-n", "--lines", type=int, default=20, metavar="N",
                   help="how many of the last lines of each service (default: %(default)s)")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    p.add_argument("--since", type=moment, metavar="WHEN", help="only lines from WHEN on: "
                   "30s, 10m, 2h, 1d ago, or a time (17:05, 2026-12-03 17:05:30)")
    p.add_argument("--until", type=moment, metavar="WHEN", help="only lines up to WHEN")
    p.add_argument("--json", action="store_true", help="print one JSON object per line")
    control(p)

    p = command("events")
    p.add_argument("services", nargs="*", metavar="SERVICE", help="(default: every service)")
    p.add_argument("--json", action="store_true", help="print one JSON object per line")
    control(p)

    p = command("tree")
    p.add_argument("services", nargs="*", metavar="SERVICE", help="(default: every service)")
    p.add_argument("--json", action="store_true", help="print JSON")
    control(p)

    p = command("analyze")
    p.add_argument("what", nargs="?", choices=("plot", "critical-chain"), default="plot")
    p.add_argument("service", nargs="?", metavar="SERVICE",
                   help="for critical-chain (default: the last service to settle)")
    p.add_argument("-o", "--output", metavar="FILE", help="write the SVG to FILE "
                   "(default: standard output)")
    control(p)

    p = command("completion")
    p.add_argument("shell", choices=("bash", "zsh", "fish"))

    p = command("reload")
    p.add_argument("services", nargs="*", metavar="SERVICE")
    control(p)
    control(command("shutdown"))
    # System mode: handled by roost.system (see main); listed here for --help.
    for verb, text in SYSTEM_COMMANDS.items():
        p = sub.add_parser(verb, help=text, add_help=False)
        p.add_argument("rest", nargs=argparse.REMAINDER)
    return parser
