"""Conditions and assertions combined as systemd.unit(5) says: `!` negates a test, `|` makes
it triggering; a group holds when every plain one holds and, if any is triggering, one of
those does. Conditions are looked at before assertions. And the file tests themselves."""

from __future__ import annotations

from pathlib import Path

import pytest

from roost.config.load import read
from roost.core.conditions import parse, unmet
from roost.importers.systemd import convert
from roost.kernel.conditions import test as file_test

EXISTS = {"/yes", "/also"}


def fake(kind: str, path: str) -> bool:
    return path in EXISTS


@pytest.mark.parametrize(("conditions", "expected"), [
    ([], None),
    ([["condition_path_exists", "/yes"]], None),
    ([["condition_path_exists", "/no"]], ("condition", "condition_path_exists=/no is not met")),
    ([["condition_path_exists", "!/no"]], None),
    ([["condition_path_exists", "!/yes"]], ("condition", "condition_path_exists=!/yes is not met")),
    # One triggering condition that holds is enough, if every plain one holds too.
    ([["condition_path_exists", "|/no"], ["condition_path_exists", "|/yes"]], None),
    ([["condition_path_exists", "|/no"], ["condition_path_exists", "|!/also"]],
     ("condition", "none of condition_path_exists=|/no, condition_path_exists=|!/also is met")),
    ([["condition_path_exists", "|/yes"], ["condition_path_is_directory", "/no"]],
     ("condition", "condition_path_is_directory=/no is not met")),
    ([["assert_path_exists", "/no"]], ("assert", "assert_path_exists=/no is not met")),
    # A skipped start asserts nothing.
    ([["assert_path_exists", "/no"], ["condition_path_exists", "/no"]],
     ("condition", "condition_path_exists=/no is not met")),
])
def test_how_conditions_combine(conditions: list[list[str]],
                                expected: tuple[str, str] | None) -> None:
    assert unmet(conditions, fake) == expected


def test_prefixes_parse_in_systemds_order() -> None:
    assert parse("|!/x") == (True, True, "/x")
    assert parse("!/x") == (False, True, "/x")
    assert parse("/x") == (False, False, "/x")


def test_the_file_tests(tmp_path: Path) -> None:
    empty, full, script = tmp_path / "empty", tmp_path / "full", tmp_path / "run.sh"
    empty.touch()
    full.write_text("x")
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    link = tmp_path / "link"
    link.symlink_to(full)
    assert file_test("path_exists", str(link)) and not file_test("path_exists", "/no/such")
    assert file_test("path_is_directory", str(tmp_path))
    assert not file_test("path_is_directory", str(full))
    assert file_test("file_not_empty", str(full)) and not file_test("file_not_empty", str(empty))
    assert not file_test("file_not_empty", str(tmp_path))
    assert file_test("file_is_executable", str(script))
    assert not file_test("file_is_executable", str(full))
    assert not file_test("file_is_executable", str(tmp_path))
    assert file_test("path_exists_glob", str(tmp_path / "f*"))
    assert not file_test("path_exists_glob", str(tmp_path / "z*"))


def test_keys_gather_in_order_and_a_unit_maps_to_them(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text('command = ["/bin/true"]\n'
                                     'condition_path_exists = ["/etc", "|!/run/x"]\n'
                                     'assert_file_not_empty = "/etc/passwd"\n')
    unit = tmp_path / "b.service"
    unit.write_text("[Unit]\nConditionPathExists=/nope\nConditionPathExists=\n"
                    "ConditionPathExists=!/run/y\nAssertPathIsDirectory=|/tmp\n"
                    "[Service]\nExecStart=/bin/true\n")
    config, errors = read(str(tmp_path))
    assert errors == []
    assert config.services["a"].conditions == [
        ["condition_path_exists", "/etc"], ["condition_path_exists", "|!/run/x"],
        ["assert_file_not_empty", "/etc/passwd"]]
    assert config.services["b"].conditions == [
        ["condition_path_exists", "!/run/y"], ["assert_path_is_directory", "|/tmp"]]
    assert not any("Condition" in w or "Assert" in w for w in convert(str(unit)).warnings)


def test_a_relative_condition_in_a_unit_is_an_error_at_its_line(tmp_path: Path) -> None:
    (tmp_path / "b.service").write_text("[Unit]\nConditionFileIsExecutable=bin/x\n"
                                        "[Service]\nExecStart=/bin/true\n")
    _, errors = read(str(tmp_path))
    assert [str(e) for e in errors] == [
        f"{tmp_path}/b.service:2: ConditionFileIsExecutable: expected an absolute path "
        "(after | and !), got 'bin/x'"]
