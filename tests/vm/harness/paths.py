"""Where things are: the repository, the asset cache, and the guest's fixed paths and names."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# This package is tests/vm/harness/: HERE is tests/vm, where guest/ lives.
HERE = Path(__file__).resolve().parents[1]
REPO = HERE.parents[1]
GUEST_DIR = HERE / "guest"
DEFAULT_CACHE = REPO / ".cache" / "vm"
ROOST_SRC = REPO / "src" / "roost"

QEMU = "qemu-system-x86_64"
QEMU_INSTALL = "apt-get install -y --no-install-recommends qemu-system-x86"
E2FSPROGS_INSTALL = "apt-get install -y --no-install-recommends e2fsprogs"

PY_VER = f"{sys.version_info.major}.{sys.version_info.minor}"
#: The interpreter inside the guest, and the shebang guest scripts use.
GUEST_PYTHON = f"/usr/bin/python{PY_VER}"
GUEST_SHEBANG = f"#!{GUEST_PYTHON} -IS"
#: Where the guest-side helpers (say.py, the placeholder PID 1) live in the image.
GUEST_LIB = "/usr/lib/roost-vm"
#: PID 1 choices: roost itself (argv[0] dispatch through the /sbin/init symlink) or the
#: placeholder that exercises the harness.  Scenarios pick one with ``boot(init=...)``.
ROOST_INIT = "/sbin/init"
PLACEHOLDER_INIT = f"{GUEST_LIB}/pid1.py"
#: Verdict lines start with this word; see guest/say.py.
VERDICT_PREFIX = "ROOST-VM"
#: Printed by stage 0 at the top of every boot; counts boots.
BOOT_MARKER = f"{VERDICT_PREFIX} stage0 start"
ROOT_IN_OUTER = "root.img"


def cache_dir() -> Path:
    """The asset cache: ``$ROOST_VM_CACHE`` or ``<repo>/.cache/vm``."""
    return Path(os.environ.get("ROOST_VM_CACHE") or DEFAULT_CACHE)
