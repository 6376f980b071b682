"""kernel/dirs.py on a real filesystem: a link swapped in under a service's directory is
never followed, neither to make nor to remove."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from roost.kernel import dirs


def test_remove_follows_no_link_a_service_put_in_a_parent(tmp_path: Path) -> None:
    base = tmp_path / "run"
    outside = tmp_path / "etc" / "x"
    outside.mkdir(parents=True)
    (outside / "keep").write_text("not the service's")
    (base / "app").mkdir(parents=True)
    # The service owns run/app and replaces its sub with a link to elsewhere.
    (base / "app" / "sub").symlink_to(tmp_path / "etc")
    dirs.remove(str(base), "app/sub/x")
    assert (outside / "keep").read_text() == "not the service's"


def test_remove_takes_the_directory_and_all_in_it(tmp_path: Path) -> None:
    made = dirs.make(str(tmp_path), "app/sub", os.geteuid(), os.getegid(), 0o750)
    (Path(made) / "file").write_text("x")
    dirs.remove(str(tmp_path), "app/sub")
    assert not Path(made).exists() and (tmp_path / "app").is_dir()
    dirs.remove(str(tmp_path), "app/sub")  # gone already: nothing to do
    dirs.remove(str(tmp_path / "missing"), "app")


def test_make_refuses_a_link_in_the_path(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "app").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(dirs.Refused, match="not a directory roost may use"):
        dirs.make(str(tmp_path), "app/sub", os.geteuid(), os.getegid(), 0o755)
    assert not (tmp_path / "elsewhere" / "sub").exists()
