#!/usr/bin/env python3
"""Print verdict lines for the roost VM harness: ``ROOST-VM <key> <value...>`` on the console.

Standalone (standard library only), copied into every image as /usr/lib/roost-vm/say.py.
From Python: ``sys.path.insert(0, "/usr/lib/roost-vm"); import say; say.say("key", "value")``.
From a shell: ``/usr/lib/roost-vm/say.py key value...`` or ``say.py --exit N``.
"""

from __future__ import annotations

import os
import sys

PREFIX = "ROOST-VM"
# /dev/console reaches the serial line the host reads; ttyS0 if /dev has only that; the
# process's own stderr as the last resort (PID 1 inherits the console there).
TARGETS = ("/dev/console", "/dev/ttyS0")


def say(key: str, *values: object) -> None:
    """Write one verdict line in a single write, so it is not torn by other console output."""
    if not key or any(c.isspace() for c in key):
        raise ValueError(f"verdict key {key!r} must be one non-empty word")
    text = " ".join([PREFIX, key, *(str(v).replace("\n", " ") for v in values)])
    data = (text + "\n").encode(errors="replace")
    for target in TARGETS:
        try:
            fd = os.open(target, os.O_WRONLY | os.O_NOCTTY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            os.write(fd, data)
            return
        except OSError:
            continue
        finally:
            os.close(fd)
    os.write(2, data)


def debug_exit(code: int) -> None:
    """End qemu at once with status ``(code << 1) | 1`` through the isa-debug-exit port."""
    fd = os.open("/dev/port", os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.pwrite(fd, bytes([code & 0xFF]), 0xF4)
    finally:
        os.close(fd)


def main(argv: list[str]) -> int:
    """Command line: ``say.py KEY [VALUE...]`` or ``say.py --exit CODE``."""
    if len(argv) == 2 and argv[0] == "--exit":
        debug_exit(int(argv[1]))
        return 0
    if not argv:
        print("usage: say.py KEY [VALUE...] | say.py --exit CODE", file=sys.stderr)
        return 2
    say(argv[0], *argv[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
