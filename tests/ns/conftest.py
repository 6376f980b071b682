"""Fixtures shared by the namespace tests."""

from __future__ import annotations

import pytest

from tests import support


@pytest.fixture
def unshare_required() -> None:
    """Skip loudly where PID namespaces cannot be made (no root, no unshare)."""
    support.require_unshare()
