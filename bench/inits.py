"""The container inits under test: how each one runs a command."""

from __future__ import annotations

import os
from typing import Any

from bench.installs import SYSTEM_BIN, VENV_BIN

# name -> (binary needed, argv prefix before the child's command). roost is the wheel
# installed in a venv, through its launcher, as a user's image runs it.
INITS: dict[str, tuple[str, list[str]]] = {
    "roost": ("roost", [str(VENV_BIN / "roost"), "run", "--"]),
    "tini": ("tini", ["tini", "--"]),
    "dumb-init": ("dumb-init", ["dumb-init"]),
    "catatonit": ("catatonit", ["catatonit", "--"]),
}

# Another roost to measure beside this one in the same run (an earlier commit's
# checkout, installed in its own venv): ROOST_BENCH_BASE=/path/to/its/bin/roost.
BASE = os.environ.get("ROOST_BENCH_BASE")
if BASE:
    INITS["roost (base)"] = ("roost", [BASE, "run", "--"])


# The other ways to start roost, measured where the start-up window is the subject:
# installed system-wide, and through env in the image's entrypoint (docs/container-init.md).
LAUNCHES: dict[str, list[str]] = {
    "roost (system-wide)": [str(SYSTEM_BIN / "roost"), "run", "--"],
    "roost (env entrypoint)": ["/usr/bin/env", "--block-signal", "ROOST_LAUNCHER=blocked",
                               str(VENV_BIN / "roost"), "run", "--"],
}


def launches(ctx: Any) -> dict[str, list[str]]:
    """The other launches of roost that can run here (system-wide needs Debian's python3)."""
    if not ctx.roost_ok:
        return {}
    ok = dict(LAUNCHES)
    if not (SYSTEM_BIN / "roost").exists():
        del ok["roost (system-wide)"]
    return ok


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
