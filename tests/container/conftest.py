"""The podman every container test shares: set up once, checked once, undone at the end.

These tests never skip: podman is part of what tests/run.sh provides, so one that
cannot run here is a failure, and the message says why.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.container.podman import Podman, Unavailable


@pytest.fixture(scope="session")
def podman() -> Iterator[Podman]:
    """A working podman, or a failure saying what keeps it from running."""
    try:
        runtime = Podman()
    except Unavailable as exc:
        pytest.fail(f"podman cannot run here: {exc}", pytrace=False)
    try:
        ran = runtime.run(["--", "true"])
        if ran.rc != 0:
            pytest.fail(f"podman cannot run a container here: {ran}", pytrace=False)
        yield runtime
    finally:
        runtime.close()
