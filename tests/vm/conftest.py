"""Fixtures for the qemu tests: shared assets built once per session, a workbench per test.

The tests skip, loudly and with the install command, when qemu or the Debian packages are out
of reach.  Set ROOST_VM_REQUIRE=1 (as CI does where qemu is installed) to make that a failure.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from . import harness

_RECORDS: list[tuple[str, str, float]] = []
_PASSED = pytest.StashKey[bool]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "vm: boots a real Linux kernel under qemu (slow; needs qemu-system-x86_64)")


def _unavailable(reason: str) -> None:
    message = f"VM tests cannot run: {reason}"
    if os.environ.get("ROOST_VM_REQUIRE") == "1":
        pytest.fail(f"{message} (and ROOST_VM_REQUIRE=1)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def vm_assets() -> harness.Assets:
    """Kernel, modules, busybox, staged interpreter and initramfs, cached across sessions."""
    reason = harness.missing_tools()
    if reason:
        _unavailable(reason)
    try:
        assets = harness.ensure_assets()
    except harness.AssetsUnavailable as exc:
        _unavailable(str(exc))
        raise  # not reached: _unavailable always raises
    for step, seconds in assets.timings.items():
        _RECORDS.append(("assets", step, seconds))
    return assets


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report = yield
    item.stash.setdefault(_PASSED, True)
    if report.failed:
        item.stash[_PASSED] = False
    return report


@pytest.fixture
def vm(vm_assets: harness.Assets, tmp_path, request: pytest.FixtureRequest) -> Iterator[harness.VM]:
    """A workbench in tmp_path; disk images are deleted after a passing test (logs stay)."""
    bench = harness.VM(vm_assets, tmp_path)
    yield bench
    for what, seconds in bench.records:
        _RECORDS.append((request.node.name, what, seconds))
    if request.node.stash.get(_PASSED, False):
        for image in tmp_path.rglob("*.img"):
            image.unlink()
        for tree in tmp_path.rglob("*-tree"):
            shutil.rmtree(tree, ignore_errors=True)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if not _RECORDS:
        return
    terminalreporter.section("roost VM timings (seconds)")
    for test, what, seconds in _RECORDS:
        terminalreporter.write_line(f"{seconds:8.2f}  {test}: {what}")
