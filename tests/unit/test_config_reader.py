"""The configuration read in a child process: same result, and the parser stays out."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from roost.config import load, reader

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo"


def test_child_reads_what_the_parent_would() -> None:
    here, here_errors = load.read(str(DEMO))
    there, there_errors = reader.read(str(DEMO))
    assert here_errors == [] and there_errors == []
    assert here.directory == there.directory
    assert sorted(here.services) == sorted(there.services)
    for name, service in here.services.items():
        assert there.services[name].fingerprint() == service.fingerprint()
    for slot in type(here.settings).__slots__:
        assert getattr(there.settings, slot) == getattr(here.settings, slot), slot


def test_errors_come_back_with_file_line_and_key(tmp_path: Path) -> None:
    (tmp_path / "web.toml").write_text('command = ["true"]\nrestart = "sometimes"\n')
    (tmp_path / "db.toml").write_text('command = ["true"]\nrequires = ["nope"]\n')
    here = [str(e) for e in load.read(str(tmp_path))[1]]
    there = [str(e) for e in reader.read(str(tmp_path))[1]]
    assert there == here
    assert any(e.startswith(f"{tmp_path}/web.toml:2: restart:") for e in there), there
    with pytest.raises(load.ConfigInvalid) as caught:
        reader.load(str(tmp_path))
    assert len(caught.value.errors) == len(here)


def test_a_failing_reader_is_an_error_not_a_crash() -> None:
    # An embedded NUL makes the child's listdir raise ValueError: the child dies, the
    # caller gets a configuration error.
    with pytest.raises(load.ConfigInvalid) as caught:
        reader.load("/tmp/no\0such")
    assert "reader failed" in str(caught.value)


def test_the_parser_never_enters_the_reading_process() -> None:
    code = (
        "import sys\n"
        "from roost.config import reader\n"
        f"config = reader.load({str(DEMO)!r})\n"
        "assert config.services, config\n"
        "print(sorted(m for m in sys.modules if m.startswith('tomllib')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True)
    assert out.stdout.strip() == "[]", out
