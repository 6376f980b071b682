"""How a process ended, in words and as a shell exit code."""

from __future__ import annotations

import _signal

import pytest

from roost.core import sigs
from roost.core.exits import ExitStatus


@pytest.mark.parametrize(("status", "text", "shell", "success"), [
    (ExitStatus(code=0), "exited 0", 0, True),
    (ExitStatus(code=3), "exited 3", 3, False),
    (ExitStatus(code=255), "exited 255", 255, False),
    (ExitStatus(signal=_signal.SIGTERM), "killed by SIGTERM", 128 + 15, False),
    (ExitStatus(signal=_signal.SIGKILL), "killed by SIGKILL", 137, False),
    (ExitStatus(signal=_signal.SIGSEGV, core=True), "killed by SIGSEGV (core dumped)", 139,
     False),
    (ExitStatus(signal=sigs.RTMIN + 2), "killed by SIGRTMIN+2", 128 + sigs.RTMIN + 2, False),
])
def test_describe(status: ExitStatus, text: str, shell: int, success: bool) -> None:
    assert status.describe() == text
    assert status.shell_code() == shell
    assert status.success is success
    assert repr(status) == f"ExitStatus({text!r})"



def test_equality_and_hash() -> None:
    assert ExitStatus(code=1) == ExitStatus(code=1)
    assert ExitStatus(code=1) != ExitStatus(code=2)
    assert ExitStatus(signal=9) != ExitStatus(signal=9, core=True)
    assert len({ExitStatus(code=1), ExitStatus(code=1), ExitStatus(signal=1)}) == 2
    assert ExitStatus(code=0).__eq__("exited 0") is NotImplemented
