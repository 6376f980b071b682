"""roost's entry point: `roost`, `python -m roost`, and the init/poweroff/reboot/halt names."""

from roost import early  # noqa: I001 - first: blocks signals before any other import

import posix
import sys

SYSTEM_REQUESTS = ("poweroff", "reboot", "halt", "shutdown")


def main(argv: list[str] | None = None) -> int:
    """Dispatch on the program name, then on the subcommand."""
    argv = sys.argv if argv is None else argv
    prog = argv[0].rpartition("/")[2] if argv else "roost"
    args = argv[1:]
    if args[:1] == ["run"]:
        from roost.container import run  # noqa: PLC0415 - lazy (start-up): a role loads only its own

        code = run.main(args[1:])
        # Nothing is left to clean up, and tearing the interpreter down costs a container
        # its exit latency: leave at once, with stdio flushed.
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        posix._exit(code)
    # The system names go straight to roost.system: PID 1 binds its socket, and a
    # `poweroff` asks, before argparse is even imported.
    if prog in SYSTEM_REQUESTS or args[:1] in (["poweroff"], ["reboot"], ["halt"]):
        from roost.system import poweroff  # noqa: PLC0415 - lazy (start-up): a client only

        if prog in SYSTEM_REQUESTS:
            return poweroff.main(prog, args)
        return poweroff.main(args[0], args[1:])
    if prog == "init" or args[:1] == ["init"] or (posix.getpid() == 1 and not args):
        from roost.system import boot  # noqa: PLC0415 - lazy (start-up): a role loads only its own

        return boot.main(args[1:] if args[:1] == ["init"] and prog != "init" else args)
    if args[:1] == ["import"]:
        early.restore()
        if args[1:2] == ["supervisord"]:
            from roost.importers import supervisord  # noqa: PLC0415 - lazy (start-up): a tool only

            return supervisord.main(args[2:])
        if args[1:2] == ["systemd"]:
            from roost.importers import systemd  # noqa: PLC0415 - lazy (start-up): a tool only

            return systemd.main(args[2:])
        sys.stderr.write("usage: roost import supervisord FILE [-o DIR]\n"
                         "       roost import systemd UNIT.service... [-o DIR]\n")
        return 2
    if args[:1] == ["up"]:
        from roost import up  # noqa: PLC0415 - lazy (memory): the supervisor loads no client code

        supervised = up.main(args[1:])
        if supervised is not None:
            return supervised
    from roost import cli  # noqa: PLC0415 - lazy (start-up): a role loads only its own

    return cli.main(args)


if __name__ == "__main__":
    sys.exit(main())
