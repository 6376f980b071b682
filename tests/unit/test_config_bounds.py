"""Every number a configuration holds is bounded, and no input, however large or deep, makes
checking print more than one line per error, or a traceback."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from roost.config import check as config_check
from roost.config.errors import ConfigError, degrade
from roost.config.load import read
from tests.support import ROOST
from tests.unit.test_config import check, write

HUGE = 10**100


@pytest.mark.parametrize("key", sorted(config_check.SERVICE_KEYS))
def test_a_huge_number_is_refused_at_its_line_for_every_service_key(tmp_path: Path,
                                                                    key: str) -> None:
    body = f"{key} = {HUGE}\n" if key == "command" else f'command = ["true"]\n{key} = {HUGE}\n'
    write(tmp_path, {"svc.toml": body})
    errs = [e for e in read(str(tmp_path))[1] if e.key == key]
    assert len(errs) == 1, errs
    assert errs[0].line == (1 if key == "command" else 2)
    # One line: at most the key's choices (restart's seven) and 40 characters of the value.
    assert len(errs[0].message) < 140, errs[0].message


@pytest.mark.parametrize("key", sorted(config_check.SETTINGS_KEYS))
def test_a_huge_number_is_refused_at_its_line_for_every_setting(tmp_path: Path,
                                                                key: str) -> None:
    first = "log_console = true" if key != "log_console" else 'control = "@x"'
    write(tmp_path, {"roost.toml": f"{first}\n{key} = {HUGE}\n"})
    errs = read(str(tmp_path))[1]
    assert [(e.key, e.line) for e in errs] == [(key, 2)], errs
    assert len(errs[0].message) < 120, errs[0].message


@pytest.mark.parametrize(("file", "key", "value", "message"), [
    ("roost.toml", "log_keep", "1001", "must be at most 1000, got 1001"),
    ("roost.toml", "log_max_bytes", str(2**50 + 1), f"must be at most {2**50}, got {2**50 + 1}"),
    ("svc.toml", "restart_limit", "1000001", "must be at most 1000000, got 1000001"),
    ("svc.toml", "pids_max", "4194305", "must be at most 4194304, got 4194305"),
    ("svc.toml", "memory_max", '"2P"', "expected a size like 512M or a number of bytes, got '2P'"),
    ("svc.toml", "memory_max", str(2**50 + 1), f"must be at most {2**50} bytes (1P), got "
     f"{2**50 + 1}"),
    ("svc.toml", "user", "4294967295", "a numeric id must be at most 4294967294, got 4294967295"),
    ("svc.toml", "group", '"4294967295"', "a numeric id must be at most 4294967294, got "
     "'4294967295'"),
    ("svc.toml", "stop_signal", "65", "no signal numbered 65"),
    ("svc.toml", "ready", '"fd:1024"', "the notification fd must be at most 1023 (a service's "
     "descriptors end below 1024)"),
    ("svc.toml", "restart", '"' + "x" * 5000 + '"',
     "expected one of always, on-success, on-failure, on-abnormal, on-abort, on-watchdog, "
     "never; got '" + "x" * 36 + "..."),
])
def test_bounds(tmp_path: Path, file: str, key: str, value: str, message: str) -> None:
    files = {"svc.toml": 'command = ["true"]\n'}
    files[file] = files.get(file, "") + f"{key} = {value}\n"
    write(tmp_path, files)
    line = 2 if file == "svc.toml" else 1
    assert [str(e) for e in read(str(tmp_path))[1]] == [
        f"{tmp_path / file}:{line}: {key}: {message}"]


def test_the_largest_values_are_accepted(tmp_path: Path) -> None:
    write(tmp_path, {
        "roost.toml": f"log_keep = 1000\nlog_max_bytes = {2**50}\nkill_timeout = 1000000\n",
        "svc.toml": 'command = ["true"]\nrestart_limit = 1000000\npids_max = 4194304\n'
                    'memory_max = 1125899906842624\nuser = 4294967294\nready = "fd:1023"\n'
                    "stop_signal = 64\n",
    })
    config, errs = read(str(tmp_path))
    assert errs == []
    assert (config.settings.log_keep, config.services["svc"].ready) == (1000, "fd:1023")


def run_check(directory: Path) -> subprocess.CompletedProcess[str]:
    out = check(directory)
    assert out.returncode == 1, out
    assert "Traceback" not in out.stdout + out.stderr, out
    return out


def test_an_integer_too_long_for_python_is_one_line(tmp_path: Path) -> None:
    write(tmp_path, {"svc.toml": 'command = ["true"]\n# fine\nrestart_limit = ' + "1" * 4301})
    out = run_check(tmp_path)
    assert out.stdout == (f"{tmp_path / 'svc.toml'}:3: TOML: an integer has more than "
                          "4300 digits\n")


@pytest.mark.parametrize("value", ["[" * 1000 + "]" * 1000, "{a=" * 1000 + "1" + "}" * 1000])
def test_nesting_too_deep_is_one_line_for_check_and_up(tmp_path: Path, value: str) -> None:
    write(tmp_path, {"svc.toml": f'command = ["true"]\nenvironment = {{ A = {value} }}\n'})
    out = run_check(tmp_path)
    assert out.stdout == f"{tmp_path / 'svc.toml'}: TOML: arrays or tables nested too deeply\n"
    # roost up reads in a child: the same one line, then what it did about it.
    up = subprocess.run([*ROOST, "up", "-c", str(tmp_path), "--control", "@roost-deep-test"],
                        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert up.returncode == 1, up
    assert up.stdout + up.stderr == (
        f"{tmp_path / 'svc.toml'}: TOML: arrays or tables nested too deeply\n"
        "roost: 1 configuration error; nothing started\n"), up


def test_a_huge_unknown_key_is_shortened(tmp_path: Path) -> None:
    write(tmp_path, {"svc.toml": 'command = ["true"]\n' + "k" * 100000 + " = 1\n"})
    out = run_check(tmp_path)
    assert out.stdout == f"{tmp_path / 'svc.toml'}:2: unknown key '{'k' * 36}...\n"


# -- degrade: what a system's init sets aside --------------------------------------------


def test_degrade_sets_aside_what_the_errors_reach(tmp_path: Path) -> None:
    write(tmp_path, {
        "db.toml": 'command = ["true"]\n',
        "web.toml": 'command = ["true"]\nrequires = ["db", "cache"]\n',
        "api.toml": 'command = ["true"]\nrequires = ["web"]\n',
        "edge.toml": 'command = ["true"]\nrequires = ["api"]\n',
        "cron.toml": 'command = ["true"]\nwants = ["web", "db"]\n',
        "roost.toml": "log_keep = 0\n",
    })
    config, errors = read(str(tmp_path))
    broken = degrade(config, errors)
    assert sorted(config.services) == ["cron", "db"]
    assert config.services["cron"].wants == ["db"]
    assert broken == {
        "roost.toml": "roost.toml:1: log_keep: must be 1 or more, got 0",
        "web": "web.toml:2: requires: cache: no such service",
        "api": "requires web, which is broken",
        "edge": "requires api, which is broken",
    }


def test_degrade_names_directory_errors_by_the_directory(tmp_path: Path) -> None:
    config, _ = read(str(tmp_path))
    error = ConfigError(config.directory, "the configuration reader failed")
    assert degrade(config, [error]) == {config.directory: f"{tmp_path.name}: the configuration "
                                        "reader failed"}


def test_emergency_shell_default_and_off(tmp_path: Path) -> None:
    """Unset: sulogin or /bin/sh on a machine, none in a namespace; `false`: none anywhere."""
    from roost.kernel import linux
    from roost.system import emergency

    write(tmp_path, {"roost.toml": "emergency_shell = false\n"})
    off = read(str(tmp_path))[0].settings.emergency_shell
    assert off == []
    assert emergency.shell_argv(off, linux.MACHINE) is None
    assert emergency.shell_argv(None, linux.NAMESPACE) is None
    assert emergency.shell_argv(["/bin/x"], linux.NAMESPACE) == ["/bin/x"]
    default = emergency.shell_argv(None, linux.MACHINE)
    installed = [p for p in emergency.SULOGIN if Path(p).exists()]
    assert default == ([installed[0]] if installed else ["/bin/sh"])
