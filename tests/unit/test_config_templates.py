"""Templates: instances from `instances`, from a requirement, from a symlink; specifiers as
systemd.unit(5) gives them, by the unit reader's own implementation."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from roost.config.load import read
from roost.importers.unitfile import Refused, expand, specifiers_of


def test_specifiers_as_systemd_documents_them() -> None:
    spec = specifiers_of("getty@tty-1.service")
    assert [spec[k] for k in "nNpPiI"] == ["getty@tty-1.service", "getty@tty-1", "getty",
                                          "getty", "tty-1", "tty/1"]
    assert [spec[k] for k in "tSCLE"] == ["/run", "/var/lib", "/var/cache", "/var/log", "/etc"]
    assert spec["U"] == str(os.getuid())
    assert expand("%i at 100%% in %t/%p", spec, "x") == "tty-1 at 100% in /run/getty"
    with pytest.raises(Refused, match="the specifier %Z has no value"):
        expand("%Z", spec, "x")
    with pytest.raises(Refused, match="a lone %"):
        expand("50%", spec, "x")


def test_instances_from_the_key_a_requirement_and_a_symlink(tmp_path: Path) -> None:
    (tmp_path / "web@.toml").write_text(
        'command = ["/bin/echo", "%i", "%I"]\ninstances = ["a"]\n'
        'environment = { WHO = "%n" }\n')
    (tmp_path / "web@c.toml").symlink_to("web@.toml")
    (tmp_path / "job@.service").write_text("[Service]\nType=oneshot\nExecStart=/bin/echo %i\n")
    (tmp_path / "job@.service.d").mkdir()
    (tmp_path / "job@x.service.d").mkdir()
    (tmp_path / "job@x.service.d/o.conf").write_text("[Service]\nExecStart=\n"
                                                     "ExecStart=/bin/echo only-x\n")
    (tmp_path / "front.toml").write_text(
        'command = ["/bin/true"]\nrequires = ["web@b-1", "job@x", "job@y"]\n')
    config, errors = read(str(tmp_path))
    assert errors == []
    got = {n: s.argv for n, s in config.services.items()}
    assert got == {"front": ["/bin/true"], "web@a": ["/bin/echo", "a", "a"],
                   "web@b-1": ["/bin/echo", "b-1", "b/1"], "web@c": ["/bin/echo", "c", "c"],
                   "job@x": ["/bin/echo", "only-x"], "job@y": ["/bin/echo", "y"]}
    assert config.services["web@a"].environment == {"WHO": "web@a"}
    assert "web@" not in config.services


def test_an_instance_with_no_template_and_instances_outside_one(tmp_path: Path) -> None:
    (tmp_path / "front.toml").write_text('command = ["/bin/true"]\nrequires = ["db@main"]\n')
    (tmp_path / "plain.toml").write_text('command = ["/bin/true"]\ninstances = ["a"]\n')
    (tmp_path / "t@.toml").write_text('command = ["/bin/echo", "%Q"]\ninstances = ["a", "b c"]\n')
    _, errors = read(str(tmp_path))
    shown = sorted(str(e).replace(str(tmp_path) + "/", "") for e in errors)
    assert shown == [
        "front.toml:2: requires: db@main: no such service, nor a template db@.toml or "
        "db@.service",
        "plain.toml:2: instances: unknown key",
        "t@.toml:2: instances: not an instance name: 'b c'",
    ], shown


def test_a_bad_specifier_in_an_instance_is_named(tmp_path: Path) -> None:
    (tmp_path / "t@.toml").write_text('command = ["/bin/echo", "%Q"]\ninstances = ["a"]\n')
    _, errors = read(str(tmp_path))
    assert [str(e) for e in errors] == [
        f"{tmp_path}/t@.toml:1: command: t@a: the specifier %Q has no value here"]
