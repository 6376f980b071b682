"""The container inits under test: how each one runs a command."""

from __future__ import annotations

import os
from typing import Any

from bench.core import ROOST

# name -> (binary needed, argv prefix before the child's command)
INITS: dict[str, tuple[str, list[str]]] = {
    "roost": ("roost", [str(ROOST), "run", "--"]),
    "tini": ("tini", ["tini", "--"]),
    "dumb-init": ("dumb-init", ["dumb-init"]),
    "catatonit": ("catatonit", ["catatonit", "--"]),
}

# Another roost to measure beside this one in the same run (an earlier commit's
# checkout, installed in its own venv): ROOST_BENCH_BASE=/path/to/its/bin/roost.
BASE = os.environ.get("ROOST_BENCH_BASE")
if BASE:
    INITS["roost (base)"] = ("roost", [BASE, "run", "--"])


def available(ctx: Any) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Argv prefixes of the inits that can run, and why the others cannot."""
    ok: dict[str, list[str]] = {}
    why: dict[str, str] = {}
    for name, (binary, prefix) in INITS.items():
        if name.startswith("roost"):
            if ctx.roost_ok:
                ok[name] = prefix
            else:
                why[name] = ctx.roost_reason
        elif ctx.peers.has(binary):
            ok[name] = [ctx.peers.paths[binary], *prefix[1:]]
        else:
            why[name] = ctx.peers.why_not(binary)
    return ok, why
