"""The command line: `roost up`, `roost status`, and the rest (see `roost --help`)."""

from __future__ import annotations

import json
import os
import sys

from roost import __version__, early

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import Any

CHECK_OK = 0
FAILURE = 1
USAGE_ERROR = 2

DEFAULT_CONFIG = "/etc/roost"

_COLOURS = {"up": "32", "done": "32", "starting": "33", "stopping": "33", "backoff": "33",
            "failed": "31;1", "down": "2"}


SYSTEM_COMMANDS = {
    "init": "run as the system's init, PID 1 (see docs/system-init.md)",
    "poweroff": "ask init to stop everything and power off",
    "reboot": "ask init to stop everything and reboot",
    "halt": "ask init to stop everything and halt",
}


def _config_dir(value: str | None) -> str:
    return value or os.environ.get("ROOST_CONFIG") or DEFAULT_CONFIG


def _parser() -> argparse.ArgumentParser:
    import argparse  # noqa: PLC0415 - lazy (memory): see _fast_up

    parser = argparse.ArgumentParser(
        prog="roost", description="A Linux init and service supervisor.",
        epilog="`roost run --help` describes the container init's options.")
    parser.add_argument("--version", action="version", version=f"roost {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    # Listed for the help only: `roost run` is dispatched before this parser exists.
    sub.add_parser("run", help="run CMD as a container's init: roost run [options] -- CMD",
                   add_help=False)

    def control(p: argparse.ArgumentParser) -> None:
        p.add_argument("--control", metavar="ADDR",
                       help="control socket: a path or @abstract (default: $ROOST_CONTROL, "
                            "/run/roost/control for root)")

    p = sub.add_parser("up", help="supervise a configuration directory in the foreground")
    p.add_argument("-c", "--config", metavar="DIR", help=f"service directory (default: "
                   f"$ROOST_CONFIG or {DEFAULT_CONFIG})")
    p.add_argument("--log-dir", metavar="DIR", help="write service logs to files in DIR")
    p.add_argument("--quiet", action="store_true", help="do not copy service output to stdout")
    p.add_argument("-v", "--verbose", action="store_true", help="log more of what roost does")
    control(p)

    p = sub.add_parser("check", help="validate a configuration directory")
    p.add_argument("directory", nargs="?", metavar="DIR")

    p = sub.add_parser("status", help="show the state of services")
    p.add_argument("services", nargs="*", metavar="SERVICE")
    p.add_argument("--json", action="store_true", help="print JSON")
    control(p)

    for verb, text in (("start", "start services (and what they require)"),
                       ("stop", "stop services (and what requires them)"),
                       ("restart", "restart services")):
        p = sub.add_parser(verb, help=text)
        p.add_argument("services", nargs="+", metavar="SERVICE")
        p.add_argument("--no-wait", action="store_true", help="return without waiting")
        p.add_argument("--timeout", type=float, default=90.0, metavar="SECONDS")
        control(p)

    p = sub.add_parser("signal", help="send a signal to a service's main process")
    p.add_argument("signal", metavar="SIG")
    p.add_argument("services", nargs="+", metavar="SERVICE")
    control(p)

    p = sub.add_parser("log", help="show a service's output")
    p.add_argument("services", nargs="+", metavar="SERVICE")
    p.add_argument("-n", "--lines", type=int, default=20, metavar="N")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    control(p)

    p = sub.add_parser("tree", help="show every process of each service")
    p.add_argument("services", nargs="*", metavar="SERVICE")
    p.add_argument("--json", action="store_true", help="print JSON")
    control(p)

    p = sub.add_parser("reload", help="apply a changed configuration directory")
    control(p)
    p = sub.add_parser("shutdown", help="stop every service in order, then exit")
    control(p)
    # System mode: handled by roost.system (see main); listed here for --help.
    for verb, text in SYSTEM_COMMANDS.items():
        p = sub.add_parser(verb, help=text, add_help=False)
        p.add_argument("rest", nargs=argparse.REMAINDER)
    return parser


def main(args: list[str]) -> int:
    """Parse and run one command; return the exit status."""
    if args and args[0] in SYSTEM_COMMANDS:
        if args[0] == "init":
            from roost.system import boot  # noqa: PLC0415 - lazy (start-up): a role loads only its own

            return boot.main(args[1:])
        from roost.system import poweroff  # noqa: PLC0415 - lazy (start-up): a client only

        return poweroff.main(args[0], args[1:])
    fast = _fast_up(args)
    if fast is not None:
        return _up(fast)  # type: ignore[arg-type]
    parser = _parser()
    if not args:
        parser.print_help()
        return USAGE_ERROR
    ns = parser.parse_args(args)
    command = ns.command
    if command is None:  # `roost --`: options, no command
        parser.print_help()
        return USAGE_ERROR
    if command != "up":
        # Only the supervisor keeps signals blocked for its reactor; clients must die
        # of ^C like any program.
        early.restore()
    if command == "up":
        return _up(ns)
    if command == "check":
        return _check(ns)
    from roost.control.client import Client, NotRunning, RemoteError  # noqa: PLC0415 - lazy (start-up): clients only

    try:
        # A waiting start/stop/restart may take its whole --timeout before roost answers.
        wait = max(120.0, float(getattr(ns, "timeout", 0.0) or 0.0) + 10.0)
        with Client(ns.control, timeout=None if getattr(ns, "follow", False) else wait) as client:
            return _client_command(ns, client)
    except NotRunning as exc:
        print(f"roost: {exc}", file=sys.stderr)
        return FAILURE
    except RemoteError as exc:
        print(f"roost: {exc.message}", file=sys.stderr)
        return FAILURE
    except BrokenPipeError:
        # The reader went away (`roost status | head`): no traceback for that. Point
        # stdout at /dev/null so the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return CHECK_OK
    except KeyboardInterrupt:
        return 130


_UP_VALUES = {"-c": "config", "--config": "config", "--log-dir": "log_dir",
              "--control": "control"}
_UP_FLAGS = {"--quiet": "quiet", "-v": "verbose", "--verbose": "verbose"}


def _fast_up(args: list[str]) -> object | None:
    """Parse a well-formed `roost up` line without argparse, or return None.

    argparse would stay in the supervisor's memory (about 0.5 MB) for as long as it
    runs; anything this does not recognise, `--help` included, goes to argparse for
    its help and its error messages.
    """
    if args[:1] != ["up"]:
        return None
    import types  # noqa: PLC0415 - lazy (start-up): the fast path only

    ns = types.SimpleNamespace(command="up", config=None, log_dir=None, control=None,
                               quiet=False, verbose=False)
    rest = args[1:]
    while rest:
        arg = rest.pop(0)
        name, eq, value = arg.partition("=")
        if name in _UP_VALUES:
            if not eq:
                if not rest or rest[0].startswith("-"):
                    return None
                value = rest.pop(0)
            setattr(ns, _UP_VALUES[name], value)
        elif arg in _UP_FLAGS:
            setattr(ns, _UP_FLAGS[arg], True)
        else:
            return None
    return ns


def _check(ns: argparse.Namespace) -> int:
    from roost.config.load import read  # noqa: PLC0415 - lazy (start-up): `check` only

    directory = _config_dir(ns.directory)
    config, errors = read(directory)
    for error in errors:
        print(error)
    if errors:
        print(f"{len(errors)} error{'s' if len(errors) > 1 else ''} in {config.directory}",
              file=sys.stderr)
        return FAILURE
    print(f"{config.directory}: {len(config.services)} services, valid")
    return CHECK_OK


def _up(ns: argparse.Namespace) -> int:
    from roost.kernel import console  # noqa: PLC0415 - lazy (start-up): see _fast_up
    from roost.up import up  # noqa: PLC0415 - lazy (start-up): see _fast_up

    console.configure(timestamps=True, verbose=ns.verbose)
    return up(_config_dir(ns.config), control=ns.control, log_dir=ns.log_dir, quiet=ns.quiet)


def _client_command(ns: argparse.Namespace, client: Any) -> int:
    command = ns.command
    if command == "status":
        records = client.call("status", services=ns.services)
        if ns.json:
            print(json.dumps(records, indent=2))
        else:
            _print_status(records)
        return CHECK_OK
    if command in ("start", "stop", "restart"):
        records = client.call(command, services=ns.services, wait=not ns.no_wait,
                              timeout=ns.timeout)
        _print_status(records)
        if ns.no_wait:
            return CHECK_OK
        good = {"stop": ("down", "failed", "done")}.get(command, ("up", "done"))
        return CHECK_OK if all(r["state"] in good for r in records) else FAILURE
    if command == "signal":
        client.call("signal", services=ns.services, signal=ns.signal)
        return CHECK_OK
    if command == "log":
        for record in client.call("log", services=ns.services, lines=ns.lines,
                                  follow=ns.follow):
            _print_line(record, len(ns.services) > 1)
        if ns.follow:
            for record in client.events():
                _print_line(record, len(ns.services) > 1)
        return CHECK_OK
    if command == "tree":
        result = client.call("tree", services=ns.services)
        if ns.json:
            print(json.dumps(result, indent=2))
        else:
            _print_tree(result)
        return CHECK_OK
    if command == "reload":
        summary = client.call("reload")
        parts = [f"{key}: {', '.join(names)}" for key, names in summary.items() if names]
        print("reloaded" + ("; " + "; ".join(parts) if parts else ": nothing changed"))
        return CHECK_OK
    client.call("shutdown")  # the last command the parser knows
    print("roost is shutting down")
    return CHECK_OK


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    total = int(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h"
    if hours:
        return f"{hours}h{minutes}m"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{seconds:.1f}s" if seconds < 10 else f"{secs}s"


def _print_status(records: list[dict[str, Any]]) -> None:
    colour = sys.stdout.isatty() and os.environ.get("NO_COLOR") is None
    rows = [("NAME", "STATE", "PID", "UPTIME", "RESTARTS", "LAST EXIT")]
    for r in records:
        last = r.get("last_exit") or "-"
        if r.get("reason") and r["state"] != "up":
            last = r["reason"]
        rows.append((r["name"], r["state"], str(r["pid"] or "-"), _duration(r.get("uptime")),
                     str(r["restarts"]), last))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for index, row in enumerate(rows):
        cells = [row[i].ljust(widths[i]) for i in range(5)]
        if colour and index > 0:
            code = _COLOURS.get(row[1], "0")
            cells[1] = f"\033[{code}m{cells[1]}\033[0m"
        print("  ".join([*cells, row[5]]).rstrip())
    for r in records:
        if r.get("log_dropped"):
            print(f"{r['name']}: {r['log_dropped']} lines never reached its log file")


def _print_line(record: dict[str, Any], with_name: bool) -> None:
    from roost.kernel import console  # noqa: PLC0415 - lazy (start-up): `log` only

    prefix = f"{record['service']} | " if with_name else ""
    print(f"{console.stamp(record['time'])} {prefix}{record['line']}", flush=True)


def _print_tree(result: dict[str, Any]) -> None:
    for entry in result["services"]:
        where = f" {entry['cgroup']}" if entry.get("cgroup") else ""
        print(f"{entry['service']} ({entry['tracking']}{where})")
        for process in entry["processes"]:
            mark = "*" if process.get("main") else " "
            indent = "  " * process.get("depth", 0)
            print(f"  {process['pid']:>7}{mark} {indent}{process['command']}")
    orphans = result.get("orphans") or []
    if orphans:
        print("orphans")
        for orphan in orphans:
            print(f"  {orphan['pid']:>7}  {orphan.get('service') or 'unknown'}  "
                  f"{orphan['command']}")
