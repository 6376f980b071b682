"""The command line front end."""

from __future__ import annotations


def main(args: list[str]) -> int:
    """Run a roost subcommand."""
    print("roost: not yet", args)
    return 2
