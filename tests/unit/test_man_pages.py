"""The manual pages: written from the command line's grammar and docs/config.md, committed,
and never drifting from them; each renders without a warning from roff."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path
from types import ModuleType

import pytest

from roost.cli_complete import commands
from roost.cli_parser import HELP, parser
from roost.container.options import USAGE

MAN = Path(__file__).resolve().parent.parent.parent / "docs" / "man"


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("generate", MAN / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_pages_are_what_their_sources_make() -> None:
    for name, text in generator().pages().items():
        assert (MAN / name).read_text() == text, (
            f"docs/man/{name} is out of date: run `python docs/man/generate.py`")


def test_every_command_and_run_option_has_its_entry() -> None:
    page = (MAN / "roost.8").read_text()
    for name in HELP:
        assert f"\n.SS {name}\n" in page, name
    run_page = (MAN / "roost-run.1").read_text()
    for option in commands(parser(), USAGE)["run"]:
        assert option.replace("-", "\\-") in run_page or option in run_page, option


@pytest.mark.parametrize("name", ["roost.8", "roost-run.1", "roost.toml.5"])
def test_each_page_renders_without_a_warning(name: str) -> None:
    groff = shutil.which("groff")
    if groff is None:
        pytest.fail("groff is not installed: tests/run.sh installs it (groff-base)")
    ran = subprocess.run([groff, "-ww", "-man", "-Tutf8", "-P-cbou", str(MAN / name)],
                         capture_output=True, text=True, timeout=60, check=False)
    assert ran.returncode == 0 and ran.stderr == "", ran.stderr
    assert "NAME" in ran.stdout and "SEE ALSO" in ran.stdout
