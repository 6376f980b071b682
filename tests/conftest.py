"""Shared by every test: a test process that imports roost's command line is not roost.

`roost.early` blocks every signal and turns the collector off at import, because roost
starts that way; a test module that imports `roost.cli` would leave the test process (and
every process it starts) with signals blocked. Give them back once collection is done.
"""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="session")
def _not_roost() -> None:
    from roost import early

    early.restore()
