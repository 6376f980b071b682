"""The command line: `roost up`, `roost status`, and the rest (see `roost --help`)."""

from __future__ import annotations

import json
import os
import sys

from roost import early
from roost.cli_parser import SYSTEM_COMMANDS, USAGE_ERROR, parser
from roost.config import DEFAULT_DIRECTORY

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import Any

CHECK_OK = 0
FAILURE = 1
def _config_dir(value: str | None) -> str:
    return value or os.environ.get("ROOST_CONFIG") or DEFAULT_DIRECTORY


def main(args: list[str]) -> int:
    """Parse and run one command; return the exit status."""
    if args and args[0] in SYSTEM_COMMANDS:
        if args[0] == "init":
            from roost.system import boot  # noqa: PLC0415 - lazy (start-up): a role loads only its own

            return boot.main(args[1:])
        from roost.system import poweroff  # noqa: PLC0415 - lazy (start-up): a client only

        return poweroff.main(args[0], args[1:])
    grammar = parser()
    if not args:
        grammar.print_help()
        return USAGE_ERROR
    ns = grammar.parse_args(args)
    command = ns.command
    if command is None:  # `roost --`: options, no command
        grammar.print_help()
        return USAGE_ERROR
    if command != "up":
        # Only the supervisor keeps signals blocked for its reactor; clients must die
        # of ^C like any program.
        early.restore()
    if command == "up":
        return _up(ns)
    if command == "check":
        return _check(ns)
    if command == "completion":
        from roost import cli_complete  # noqa: PLC0415 - lazy (start-up): `completion` only
        from roost.container.options import USAGE  # noqa: PLC0415 - lazy (start-up): `completion` only

        sys.stdout.write(cli_complete.script(ns.shell, grammar, USAGE))
        return 0
    hint = _signal_hint(ns.signal, ns.services) if command == "signal" else None
    if hint:
        print(f"roost signal: {hint} (see `roost signal --help`)", file=sys.stderr)
        return USAGE_ERROR
    from roost.control.client import Client, NotRunning, RemoteError  # noqa: PLC0415 - lazy (start-up): clients only

    try:
        # A waiting start/stop/restart may take its whole --timeout before roost answers.
        wait = max(120.0, float(getattr(ns, "timeout", 0.0) or 0.0) + 10.0)
        with Client(ns.control, timeout=None if getattr(ns, "follow", False) else wait) as client:
            if client.fell_back:
                print(f"roost: no roost of yours answers on {client.candidates[0]}; "
                      f"using the system's on {client.address}", file=sys.stderr)
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


def _check(ns: argparse.Namespace) -> int:
    from roost.config.load import read  # noqa: PLC0415 - lazy (start-up): `check` only

    target = os.path.abspath(_config_dir(ns.directory))
    one = os.path.isfile(target)
    # One file is checked in its directory: its requirements are the directory's services.
    config, errors = read(os.path.dirname(target) if one else target)
    warnings = config.warnings
    if one:
        def mine(path: str) -> bool:
            return path == target or path.startswith(target + ".d" + os.sep)
        errors = [e for e in errors if mine(e.path)]
        warnings = [w for w in warnings if mine(w.partition(": ")[0])]
    for warning in warnings:
        print(f"warning: {warning}")
    for error in errors:
        print(error)
    if errors:
        print(f"{len(errors)} error{'s' if len(errors) > 1 else ''} in {target}",
              file=sys.stderr)
        return FAILURE
    if one:
        if not any(s.path == target for s in config.services.values()):
            print(f"{target}: not a service file (NAME.toml or NAME.service)", file=sys.stderr)
            return FAILURE
        print(f"{target}: valid")
    else:
        print(f"{config.directory}: {len(config.services)} services, valid")
    return CHECK_OK


def _up(ns: argparse.Namespace) -> int:
    from roost.kernel import console  # noqa: PLC0415 - lazy (start-up): `up` only
    from roost.up import up  # noqa: PLC0415 - lazy (start-up): `up` only

    console.configure(timestamps=True, verbose=ns.verbose)
    return up(_config_dir(ns.config), control=ns.control, log_dir=ns.log_dir, quiet=ns.quiet,
              ready_fd=ns.ready_fd, ready_file=ns.ready_file)


def _client_command(ns: argparse.Namespace, client: Any) -> int:
    from roost import cli_show  # noqa: PLC0415 - lazy (start-up): clients only

    command = ns.command
    colour = cli_show.wants_colour(sys.stdout.isatty(), dict(os.environ))
    if command == "status":
        records = client.call("status", services=ns.services)
        if ns.check:
            why = cli_show.not_ready_line(records)
            if why:
                print(why)
            return cli_show.NOT_ALL_UP if why else cli_show.ALL_UP
        if ns.json:
            print(json.dumps(records, indent=2))
        elif ns.services:
            _print_details(client, records, colour)
        else:
            _print(cli_show.table(records, colour))
        return cli_show.status_exit(records, named=bool(ns.services))
    if command in ("start", "stop", "restart"):
        records = client.call(command, services=ns.services, wait=not ns.no_wait,
                              timeout=ns.timeout)
        _print(cli_show.table(records, colour))
        if ns.no_wait:
            print(f"{command} {', '.join(ns.services)}: asked, not waiting "
                  "(`roost status` shows how it goes)")
            return CHECK_OK
        summary, done = cli_show.transaction(command, ns.services, records)
        print(summary)
        return CHECK_OK if done else FAILURE
    if command == "signal":
        client.call("signal", services=ns.services, signal=ns.signal)
        return CHECK_OK
    if command == "log":
        window = {k: v for k, v in (("since", ns.since), ("until", ns.until)) if v is not None}
        named = len(ns.services) != 1
        for record in client.call("log", services=ns.services, lines=ns.lines,
                                  follow=ns.follow, **window):
            _print_line(record, named, ns.json)
        if ns.follow:
            for record in client.events():
                _print_line(record, named, ns.json)
        return CHECK_OK
    if command == "events":
        for record in client.call("events", services=ns.services):
            _print_event(record, ns.json)
        for record in client.events():
            _print_event(record, ns.json)
        return CHECK_OK
    if command == "tree":
        result = client.call("tree", services=ns.services)
        if ns.json:
            print(json.dumps(result, indent=2))
        else:
            _print(cli_show.tree_lines(result))
        return CHECK_OK
    if command == "analyze":
        return _analyze(ns, client.call("status"))
    if command == "reload" and ns.services:
        _print(cli_show.table(client.call("reload", services=ns.services), colour))
        return CHECK_OK
    if command == "reload":
        from roost.control.protocol import describe_reload  # noqa: PLC0415 - lazy (start-up): `reload` only

        summary = client.call("reload")
        words = describe_reload(summary)
        print(f"reloaded{'; ' if any(summary.values()) else ': '}{words}")
        return CHECK_OK
    client.call("shutdown")  # the last command the parser knows
    print("roost is shutting down")
    return CHECK_OK


def _analyze(ns: argparse.Namespace, records: list[dict[str, Any]]) -> int:
    from roost import cli_analyze  # noqa: PLC0415 - lazy (start-up): `analyze` only

    if ns.what == "critical-chain":
        try:
            _print(cli_analyze.critical_chain(records, ns.service))
        except KeyError:
            print(f"roost: {ns.service} has not started", file=sys.stderr)
            return FAILURE
        return CHECK_OK
    if ns.service is not None:
        print("roost: a SERVICE goes with critical-chain only", file=sys.stderr)
        return USAGE_ERROR
    svg = cli_analyze.plot(records)
    if ns.output is None:
        sys.stdout.write(svg)
    else:
        with open(ns.output, "w", encoding="utf-8") as f:
            f.write(svg)
    return CHECK_OK


def _signal_hint(signal: str, services: list[str]) -> str | None:
    """Why `roost signal SIG SERVICE...` cannot be meant as typed, or None."""
    from roost.core import sigs  # noqa: PLC0415 - lazy (start-up): `signal` only

    try:
        sigs.number(signal)
    except ValueError as exc:
        for index, word in enumerate(services):
            try:
                sigs.number(word)
            except ValueError:
                continue
            order = [word, signal, *services[:index], *services[index + 1:]]
            return f"the signal comes first: roost signal {' '.join(order)}"
        return str(exc)
    return None


def _print(lines: list[str]) -> None:
    for line in lines:
        print(line)


def _print_details(client: Any, records: list[dict[str, Any]], colour: bool) -> None:
    """Each named service in detail; its tree and log only where the caller may read them."""
    from roost import cli_show  # noqa: PLC0415 - lazy (start-up): clients only

    # A service the configuration could not set up (no type) has no processes and no log.
    names = [r["name"] for r in records if r["type"] is not None]
    tree = _permitted(client, "tree", services=names) if names else {"services": []}
    trees = {e["service"]: e for e in tree["services"]} if tree is not None else {}
    for index, record in enumerate(records):
        log = (_permitted(client, "log", services=[record["name"]], lines=10)
               if record["type"] is not None else [])
        if index:
            print()
        _print(cli_show.detail(record, trees.get(record["name"]) if tree is not None else None,
                               log, colour))


def _permitted(client: Any, cmd: str, **args: object) -> Any:
    """The result of `cmd`, or None if this user may not ask it."""
    from roost.control import protocol  # noqa: PLC0415 - lazy (start-up): clients only
    from roost.control.client import RemoteError  # noqa: PLC0415 - lazy (start-up): clients only

    try:
        return client.call(cmd, **args)
    except RemoteError as exc:
        if exc.code == protocol.NOT_PERMITTED:
            return None
        raise


def _print_event(record: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(record), flush=True)
        return
    from roost.kernel import console  # noqa: PLC0415 - lazy (start-up): `log` and `events` only

    pid = f" (pid {record['pid']})" if record["pid"] and record["state"] == "up" else ""
    reason = f": {record['reason']}" if record["reason"] else ""
    print(f"{console.stamp(record['time'])} {record['service']} {record['state']}{pid}{reason}",
          flush=True)


def _print_line(record: dict[str, Any], with_name: bool, as_json: bool = False) -> None:
    if as_json:
        print(json.dumps(record), flush=True)
        return
    from roost.kernel import console  # noqa: PLC0415 - lazy (start-up): `log` only

    stamp = console.stamp(record["time"])
    stream = record.get("stream", "out")
    if stream == "roost":  # a new run, lines lost: roost's own word, under no name
        print(f"{stamp} {record['line']}", flush=True)
        return
    mark = "!" if stream == "err" else "|"
    prefix = f"{record['service']} {mark} " if with_name else "! " if stream == "err" else ""
    print(f"{stamp} {prefix}{record['line']}", flush=True)
