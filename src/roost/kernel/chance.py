"""Random numbers for the restart jitter, without the `random` module's import cost."""

from __future__ import annotations

import os


def uniform() -> float:
    """A number in [0, 1), from the kernel's random source."""
    return int.from_bytes(os.urandom(4), "little") / 2**32
