"""Reading a configuration directory: every value it accepts, and every error it can report.

Each error names the file, the line and the key; `roost check` prints all of them at once.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from roost.config import check as config_check
from roost.config import load as config_load
from roost.config.load import ConfigInvalid, load, read
from roost.core import sigs
from roost.core.conditions import KEYS as CONDITION_KEYS
from tests.support import ROOST

TRUE = ["true"]  # found on PATH, executable


def write(directory: Path, files: dict[str, str | bytes]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        data = text.encode() if isinstance(text, str) else text
        (directory / name).write_bytes(data)
    return directory


def errors(directory: Path) -> list[str]:
    return [str(e) for e in read(str(directory))[1]]


def one_service(tmp_path: Path, body: str, name: str = "svc") -> tuple[Path, list[str]]:
    """A directory with one service file `name.toml` holding `body`; its errors."""
    write(tmp_path, {f"{name}.toml": body})
    return tmp_path / f"{name}.toml", errors(tmp_path)


# -- what is accepted ------------------------------------------------------------


def test_defaults(tmp_path: Path) -> None:
    write(tmp_path, {"web.toml": 'command = ["true"]\n'})
    config = load(str(tmp_path))
    svc = config.services["web"]
    assert svc.name == "web"
    assert svc.path == str(tmp_path / "web.toml")
    assert svc.argv == ["true"]
    assert (svc.type, svc.autostart, svc.restart, svc.ready) == ("simple", True, "on-failure",
                                                                "exec")
    assert (svc.requires, svc.wants) == ([], [])
    assert (svc.restart_delay, svc.restart_delay_max, svc.restart_limit, svc.restart_window,
            svc.restart_reset) == (0.5, 30.0, 10, 60.0, 10.0)
    assert (svc.stop_signal, svc.stop_timeout, svc.start_timeout) == (15, 10.0, 60.0)
    assert svc.working_directory == str(tmp_path)
    assert (svc.user, svc.group, svc.umask, svc.pid_file) == (None, None, None, None)
    assert svc.environment == {}
    settings = config.settings
    assert settings.path is None
    assert (settings.log_dir, settings.log_max_bytes, settings.log_keep) == (None, 1 << 20, 3)
    assert (settings.log_console, settings.control, settings.control_group) == (None, None, None)


def test_every_service_key(tmp_path: Path) -> None:
    (tmp_path / "work").mkdir()
    write(tmp_path, {
        "db.toml": 'command = ["true"]\n',
        "cache.toml": 'command = ["true"]\n',
        "web.toml": """
command = ["true", "--flag"]
type = "simple"
autostart = false
requires = ["db"]
wants = ["cache"]
restart = "always"
restart_delay = 1
restart_delay_max = 7.5
restart_limit = 4
restart_window = 30
restart_reset = 5
stop_signal = "HUP"
stop_timeout = 2.5
start_timeout = 0
ready = "fd:5"
user = "nobody"
group = "nogroup"
working_directory = "work"
umask = "027"
memory_max = "512M"
pids_max = 100
cpu_weight = 200

[environment]
GREETING = "hello"
NUMBER = 42
RATIO = 0.5
""",
    })
    svc = load(str(tmp_path)).services["web"]
    assert svc.argv == ["true", "--flag"]
    assert svc.autostart is False
    assert (svc.requires, svc.wants, svc.after) == (["db"], ["cache"], ["db", "cache"])
    assert svc.restart == "always"
    assert (svc.restart_delay, svc.restart_delay_max, svc.restart_limit, svc.restart_window,
            svc.restart_reset) == (1.0, 7.5, 4, 30.0, 5.0)
    assert (svc.stop_signal, svc.stop_timeout, svc.start_timeout) == (1, 2.5, 0.0)
    assert (svc.ready, svc.ready_fd) == ("fd:5", 5)
    assert (svc.user, svc.group) == ("nobody", "nogroup")
    assert svc.working_directory == str(tmp_path / "work")
    assert svc.umask == 0o27
    assert (svc.memory_max, svc.pids_max, svc.cpu_weight) == (512 << 20, 100, 200)
    assert svc.environment == {"GREETING": "hello", "NUMBER": "42", "RATIO": "0.5"}


def test_shell_command(tmp_path: Path) -> None:
    write(tmp_path, {"s.toml": 'shell = true\ncommand = "echo hi; sleep 1"\n'})
    assert load(str(tmp_path)).services["s"].argv == ["/bin/sh", "-c", "echo hi; sleep 1"]


@pytest.mark.parametrize(("kind", "ready", "restart"), [
    ("simple", "exec", "on-failure"), ("oneshot", "exit", "never"),
    ("forking", "exit", "on-failure"), ("notify", "notify", "on-failure"),
])
def test_types(tmp_path: Path, kind: str, ready: str, restart: str) -> None:
    write(tmp_path, {"s.toml": f'command = ["true"]\ntype = "{kind}"\n'})
    svc = load(str(tmp_path)).services["s"]
    assert (svc.type, svc.ready, svc.restart, svc.ready_fd) == (kind, ready, restart, None)


def test_forking_with_pid_file(tmp_path: Path) -> None:
    write(tmp_path, {"d.toml": 'command = ["true"]\ntype = "forking"\npid_file = "/run/d.pid"\n'})
    assert load(str(tmp_path)).services["d"].pid_file == "/run/d.pid"


@pytest.mark.parametrize(("value", "number"), [
    ('"TERM"', 15), ('"SIGINT"', 2), ('"kill"', 9), ("10", 10), ('"RTMIN+2"', sigs.RTMIN + 2),
])
def test_stop_signals(tmp_path: Path, value: str, number: int) -> None:
    write(tmp_path, {"s.toml": f'command = ["true"]\nstop_signal = {value}\n'})
    assert load(str(tmp_path)).services["s"].stop_signal == number


@pytest.mark.parametrize(("value", "number"), [
    ('"1"', 1), ("4096", 4096), ('"4K"', 4096), ('"4k"', 4096), ('"512M"', 512 << 20),
    ('"512MiB"', 512 << 20), ('"2G"', 2 << 30), ('"1T"', 1 << 40), ('"100B"', 100),
])
def test_sizes(tmp_path: Path, value: str, number: int) -> None:
    write(tmp_path, {"s.toml": f'command = ["true"]\nmemory_max = {value}\n'})
    assert load(str(tmp_path)).services["s"].memory_max == number


@pytest.mark.parametrize(("value", "mask"), [('"022"', 0o22), ('"0077"', 0o77), ("0", 0),
                                              ('"7"', 7), ("18", 0o22)])
def test_umask(tmp_path: Path, value: str, mask: int) -> None:
    write(tmp_path, {"s.toml": f'command = ["true"]\numask = {value}\n'})
    assert load(str(tmp_path)).services["s"].umask == mask


def test_numeric_user_and_group_need_no_entry(tmp_path: Path) -> None:
    write(tmp_path, {"s.toml": 'command = ["true"]\nuser = 54321\ngroup = "54321"\n'})
    svc = load(str(tmp_path)).services["s"]
    assert (svc.user, svc.group) == ("54321", "54321")


def test_command_resolution(tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    tool = bindir / "mytool"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    scripts = tmp_path / "conf" / "scripts"
    scripts.mkdir(parents=True)
    script = scripts / "run.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    write(tmp_path / "conf", {
        # Found on the service's own PATH.
        "a.toml": f'command = ["mytool"]\nenvironment = {{ PATH = "{bindir}" }}\n',
        # A relative path is relative to the working directory (the configuration).
        "b.toml": 'command = ["scripts/run.sh"]\n',
        "c.toml": f'command = ["{tool}"]\n',
    })
    assert sorted(load(str(tmp_path / "conf")).services) == ["a", "b", "c"]


def test_settings(tmp_path: Path) -> None:
    write(tmp_path, {"roost.toml": """
log_dir = "logs"
log_max_bytes = 4096
log_keep = 5
log_console = false
log_syslog = true
log_syslog_facility = "local3"
control = "@my-roost"
control_group = "nogroup"
"""})
    settings = load(str(tmp_path)).settings
    assert settings.path == str(tmp_path / "roost.toml")
    # A relative log directory is relative to the configuration directory.
    assert settings.log_dir == str(tmp_path / "logs")
    assert (settings.log_max_bytes, settings.log_keep, settings.log_console) == (4096, 5, False)
    assert (settings.control, settings.control_group) == ("@my-roost", "nogroup")
    assert (settings.log_syslog, settings.log_syslog_facility) == ("/dev/log", "local3")


def test_other_files_are_ignored(tmp_path: Path) -> None:
    write(tmp_path, {"web.toml": 'command = ["true"]\n', "README": "x", "web.toml.bak": "x =",
                     "notes.txt": "["})
    assert list(load(str(tmp_path)).services) == ["web"]


def test_empty_directory(tmp_path: Path) -> None:
    config = load(str(tmp_path))
    assert config.services == {}
    assert config.directory == str(tmp_path)


def test_fingerprint(tmp_path: Path) -> None:
    write(tmp_path / "a", {"s.toml": 'command = ["true"]\n'})
    write(tmp_path / "b", {"s.toml": '# moved\n\ncommand = ["true"]\n'})
    write(tmp_path / "c", {"s.toml": 'command = ["true"]\nenvironment = { X = "1" }\n'})
    fa, fb, fc = (load(str(tmp_path / d)).services["s"].fingerprint() for d in "abc")
    # The working directory defaults to the configuration directory, which differs here.
    assert fa != fb
    write(tmp_path / "b", {"s.toml": f'command = ["true"]\nworking_directory = "{tmp_path/"a"}"\n'})
    assert load(str(tmp_path / "b")).services["s"].fingerprint() == fa
    assert fa != fc


# -- every error ---------------------------------------------------------------------------


def test_unknown_key_with_its_line_and_a_hint(tmp_path: Path) -> None:
    path, errs = one_service(tmp_path, '# a comment\ncommand = ["true"]\nrestart_dely = 3\n')
    assert errs == [f"{path}:3: restart_dely: unknown key (did you mean 'restart_delay'?)"]


def test_unknown_key_without_a_hint(tmp_path: Path) -> None:
    path, errs = one_service(tmp_path, 'command = ["true"]\n"zzz" = 1\n')
    assert errs == [f"{path}:2: zzz: unknown key"]


def test_unknown_table_with_its_line(tmp_path: Path) -> None:
    path, errs = one_service(tmp_path, 'command = ["true"]\n\n[enviroment]\nA = "1"\n')
    assert errs == [f"{path}:3: enviroment: unknown key (did you mean 'environment'?)"]


READY_FORMS = '"exec", "fd:N", "pipevar:VAR", "file:PATH" or "tcp:HOST:PORT"'
BAD_VALUES = [
    *[(key, '"etc/x"', "expected an absolute path (after | and !), got 'etc/x'")
      for key in CONDITION_KEYS],
    ("shell", '"yes"', "expected true or false, got a string"),
    ("type", '"daemon"', "expected one of simple, oneshot, forking, notify; got 'daemon'"),
    ("type", "1", "expected one of simple, oneshot, forking, notify; got 1"),
    ("autostart", "1", "expected true or false, got an integer"),
    ("requires", '"db"', "expected a list of service names, got a string"),
    ("requires", "[1]", "expected a list of service names, got a list"),
    ("wants", "{ a = 1 }", "expected a list of service names, got a table"),
    ("restart", '"sometimes"',
     "expected one of always, on-success, on-failure, on-abnormal, on-abort, on-watchdog, "
     "never; got 'sometimes'"),
    ("restart_delay", '"1s"', "expected a number of seconds, got a string"),
    ("restart_delay", "true", "expected a number of seconds, got a boolean"),
    ("restart_delay", "-0.5", "must be 0 or more, got -0.5"),
    ("restart_delay", "nan", "must be 0 or more, got nan"),
    ("restart_delay_max", "[]", "expected a number of seconds, got a list"),
    ("restart_window", "-1", "must be 0 or more, got -1"),
    ("restart_reset", "inf", "must be at most 1000000 seconds, got inf"),
    ("stop_timeout", "-1", "must be 0 or more, got -1"),
    ("stop_timeout", "3000000", "must be at most 1000000 seconds, got 3000000"),
    ("start_timeout", "1e300", "must be at most 1000000 seconds, got 1e+300"),
    ("restart_limit", "0", "must be 1 or more, got 0"),
    ("restart_limit", "2.5", "expected an integer, got a number"),
    ("restart_limit", "true", "expected an integer, got a boolean"),
    ("stop_signal", '"FOO"', "no such signal: FOO"),
    ("stop_signal", "99", "no signal numbered 99"),
    ("stop_signal", '"STOP"', "cannot stop a service with 'STOP'"),
    ("stop_signal", "0", "cannot stop a service with 0"),
    ("stop_signal", "1.5", "expected a signal name like TERM, got a number"),
    ("ready", '"fd:2"', "the notification fd must be 3 or more (0-2 are stdio)"),
    ("ready", '"fd:x"', f"expected {READY_FORMS}, got 'fd:x'"),
    ("ready", '"notify"', f"expected {READY_FORMS}, got 'notify'"),
    ("ready", "3", f"expected {READY_FORMS}, got 3"),
    ("notify_access", '"any"', "expected one of main, exec, all, none; got 'any'"),
    ("watchdog_sec", "-1", "must be 0 or more, got -1"),
    ("watchdog_sec", "2000000", "must be at most 1000000 seconds, got 2000000"),
    ("limits", "5", "expected a table like { nofile = 65535 }, got 5"),
    ("limits", "{ files = 5 }", "'files': not a limit (one of as, core, cpu, data, fsize, "
     "locks, memlock, msgqueue, nice, nofile, nproc, rss, rtprio, rttime, sigpending, stack)"),
    ("limits", '{ nofile = "x" }', "nofile: expected a number from 0 to 9223372036854775807 "
     "or \"infinity\", got 'x'"),
    ("limits", '{ nproc = "9:3" }', "nproc: the soft limit 9 is above the hard limit 3"),
    ("nice", "20", "expected an integer from -20 to 19, got 20"),
    ("no_new_privileges", '"yes"', "expected true or false, got a string"),
    ("oom_score_adjust", "-1001", "expected an integer from -1000 to 1000, got -1001"),
    ("runtime_directory", '"/run/x"', "'/run/x': a path below the directory's base, "
     "without '..'"),
    ("state_directory", '["a/../../etc"]', "'a/../../etc': a path below the directory's base, "
     "without '..'"),
    ("cache_directory", "[]", "expected a relative path or a list of them, got []"),
    ("logs_directory", "[1]", "expected a relative path, got 1"),
    ("configuration_directory", '""', "'': a path below the directory's base, without '..'"),
    ("runtime_directory_mode", '"999"', "expected an octal mode like \"0755\", got '999'"),
    ("state_directory_mode", "true", "expected an octal mode like \"0755\", got True"),
    ("cache_directory_mode", '"8"', "expected an octal mode like \"0755\", got '8'"),
    ("logs_directory_mode", '"17777"', "expected an octal mode like \"0755\", got '17777'"),
    ("configuration_directory_mode", "493", "expected an octal mode like \"0755\", got 493"),
    ("runtime_directory_preserve", '"yes"', "expected true, false or \"restart\", got 'yes'"),
    ("success_exit_status", "3", "expected a list of exit codes and signal names, got an integer"),
    ("success_exit_status", "[256]",
     "expected an exit code from 0 to 255 or a signal name, got 256"),
    ("restart_prevent_exit_status", '["NOPE"]', "expected an exit code from 0 to 255 or a signal "
     "name, got 'NOPE'"),
    ("fd_store_max", "-1", "must be 0 or more, got -1"),
    ("fd_store_max", "1001", "must be at most 1000, got 1001"),
    ("sockets", '["tcp:127.0.0.1:0"]', "'tcp:127.0.0.1:0': the port must be 1 to 65535"),
    ("user", '""', "expected a name or a numeric id, got ''"),
    ("user", "-1", "expected a name or a numeric id, got -1"),
    ("group", "true", "expected a name or a numeric id, got True"),
    ("user", '"root\\nroost: ok"', "not a user or group name: 'root\\nroost: ok'"),
    ("working_directory", "5", "expected a string, got an integer"),
    ("environment", '"A=1"', "expected a table of NAME = value, got a string"),
    ("environment", "{ A = [1] }", "A: expected a string, got a list"),
    ("environment", "{ A = true }", "A: expected a string, got a boolean"),
    ("environment", '{ "A=B" = "x" }', "bad variable name 'A=B'"),
    ("environment", '{ "" = "x" }', "bad variable name ''"),
    ("umask", '"999"', "expected an octal string like \"022\", got '999'"),
    ("umask", '"0o22"', "expected an octal string like \"022\", got '0o22'"),
    ("umask", '""', "expected an octal string like \"022\", got ''"),
    ("umask", "512", "out of range: 512"),
    ("umask", '"1000"', "out of range: '1000'"),
    ("umask", "true", "expected an octal string like \"022\", got True"),
    ("stderr", '"journal"', "expected one of log, stdout; got 'journal'"),
    ("pid_file", "7", "expected a string, got an integer"),
    ("memory_max", '"12X"', "expected a size like 512M or a number of bytes, got '12X'"),
    ("memory_max", "0", "expected a size like 512M or a number of bytes, got 0"),
    ("memory_max", '"-5M"', "expected a size like 512M or a number of bytes, got '-5M'"),
    ("memory_max", '""', "expected a size like 512M or a number of bytes, got ''"),
    ("pids_max", "0", "must be 1 or more, got 0"),
    ("cpu_weight", "0", "expected an integer from 1 to 10000, got 0"),
    ("cpu_weight", "10001", "expected an integer from 1 to 10000, got 10001"),
    ("cpu_weight", '"high"', "expected an integer from 1 to 10000, got 'high'"),
    ("health", '"tcp:127.0.0.1:80"',
     "expected a table like { tcp = \"127.0.0.1:80\" }, got 'tcp:127.0.0.1:80'"),
    ("exec_start_pre", '"/bin/true"',
     "expected a command like [\"prog\", \"arg\"], or a list of them, got '/bin/true'"),
    ("exec_start_post", "[[]]", "expected a command like [\"prog\", \"arg\"], or a list of "
     "them, got [[]]"),
    ("exec_condition", '[["-"]]', "['-']: no program"),
    ("exec_reload", '["@/bin/kill"]', "['@/bin/kill']: with \"@\", the second word is argv[0]"),
    ("exec_stop", "[[1]]", "expected a command like [\"prog\", \"arg\"], or a list of them, "
     "got [[1]]"),
    ("exec_stop_post", '[["/nonexistent/cleanup"]]',
     "exec_stop_post command not found: /nonexistent/cleanup"),
    ("reload_signal", '"NOPE"', "no such signal: NOPE"),
    ("final_kill_signal", "0", "cannot stop a service with 0"),
    ("kill_mode", '"none"', "expected one of control-group, mixed, process; got 'none'"),
    ("send_sigkill", '"no"', "expected true or false, got a string"),
    ("remain_after_exit", "true", "only a oneshot exits and may stay up"),
    # NUL can reach no syscall: refused wherever it hides, before any lookup trips on it.
    ("user", '"\\u0000"', "contains a NUL character"),
    ("group", '"a\\u0000b"', "contains a NUL character"),
    ("environment", '{ X = "\\u0000" }', "contains a NUL character"),
    ("environment", '{ "X\\u0000" = "1" }', "contains a NUL character"),
    ("working_directory", '"/\\u0000"', "contains a NUL character"),
]


@pytest.mark.parametrize(("key", "value", "message"), BAD_VALUES)
def test_bad_value(tmp_path: Path, key: str, value: str, message: str) -> None:
    path, errs = one_service(tmp_path, f'command = ["true"]\n{key} = {value}\n')
    assert errs == [f"{path}:2: {key}: {message}"]


def test_every_key_has_a_bad_value_tested() -> None:
    tested = {key for key, _, _ in BAD_VALUES}
    assert set(config_check.SERVICE_KEYS) - tested == {"command"}  # tested below


def test_commands_around_the_main_one(tmp_path: Path) -> None:
    _, errs = one_service(tmp_path, 'command = ["true"]\n'
                             'exec_start_pre = [["-/nonexistent/check", "a"], ["true"]]\n'
                             'exec_reload = ["+@/bin/sh", "reloader", "-c", "kill -HUP $MAINPID"]\n'
                             'exec_stop = ["/bin/$TOOL", "stop"]\n')
    assert errs == []
    cfg = read(str(tmp_path))[0].services["svc"]
    # "-": it may be missing; a program named by a variable is known only at its start.
    assert cfg.exec_start_pre == [["-", ["/nonexistent/check", "a"]], ["", ["true"]]]
    assert cfg.exec_reload == [["+@", ["/bin/sh", "reloader", "-c", "kill -HUP $MAINPID"]]]
    assert cfg.exec_stop == [["", ["/bin/$TOOL", "stop"]]]
    assert not (cfg.exec_condition or cfg.exec_start_post or cfg.exec_stop_post)


def test_exec_reload_or_reload_signal(tmp_path: Path) -> None:
    path, errs = one_service(tmp_path, 'command = ["true"]\nexec_reload = ["true"]\n'
                             'reload_signal = "HUP"\n')
    assert errs == [f"{path}:3: reload_signal: exec_reload says how to reload already: set one "
                    "of the two"]


def test_missing_command(tmp_path: Path) -> None:
    path, errs = one_service(tmp_path, 'restart = "always"\n')
    assert errs == [f"{path}: command: required key missing"]


@pytest.mark.parametrize(("body", "line", "message"), [
    ('command = "true"', 1, 'expected a list like ["prog", "arg"] (a string needs shell = true)'),
    ("command = []", 1, "expected a non-empty list of strings"),
    ('command = ["true", 1]', 1, "expected a non-empty list of strings"),
    ("command = 5", 1, "expected a non-empty list of strings"),
    ('command = ["true", "a\\u0000"]', 1, "contains a NUL character"),
    ('shell = true\ncommand = ["true"]', 2, "with shell = true, expected a non-empty string"),
    ('shell = true\ncommand = "  "', 2, "with shell = true, expected a non-empty string"),
])
def test_bad_command(tmp_path: Path, body: str, line: int, message: str) -> None:
    path, errs = one_service(tmp_path, body + "\n")
    assert errs == [f"{path}:{line}: command: {message}"]


def test_command_not_found(tmp_path: Path) -> None:
    path, errs = one_service(tmp_path, 'command = ["no-such-program-xyz", "arg"]\n')
    assert errs == [f"{path}:1: command: command not found: no-such-program-xyz"]
    path, errs = one_service(tmp_path, 'command = ["/nonexistent/prog"]\n')
    assert errs == [f"{path}:1: command: command not found: /nonexistent/prog"]
    # A relative path is looked up from the working directory, not from roost's cwd.
    path, errs = one_service(tmp_path, 'command = ["scripts/missing.sh"]\n')
    assert errs == [f"{path}:1: command: command not found: scripts/missing.sh"]


def test_command_not_executable(tmp_path: Path) -> None:
    plain = tmp_path / "plain.sh"
    plain.write_text("#!/bin/sh\n")
    plain.chmod(0o644)
    conf = tmp_path / "conf"
    path, errs = one_service(conf, f'command = ["{plain}"]\n')
    assert errs == [f"{path}:1: command: not executable: {plain}"]
    path, errs = one_service(conf, f'command = ["{tmp_path}"]\n')
    assert errs == [f"{path}:1: command: not executable: {tmp_path}"]
    # On PATH, a file that is there but not executable is named as such, not "not found".
    path, errs = one_service(
        conf, f'command = ["plain.sh"]\nenvironment = {{ PATH = "{tmp_path}" }}\n')
    assert errs == [f"{path}:1: command: not executable: {plain}"]


def test_no_such_user_group_directory(tmp_path: Path) -> None:
    path, errs = one_service(tmp_path, 'command = ["true"]\nuser = "no-such-user-xyz"\n'
                             'group = "no-such-group-xyz"\nworking_directory = "/nonexistent"\n')
    assert sorted(errs) == sorted([
        f"{path}:2: user: no such user: no-such-user-xyz",
        f"{path}:3: group: no such group: no-such-group-xyz",
        f"{path}:4: working_directory: no such directory: /nonexistent",
    ])


def test_relative_working_directory_missing(tmp_path: Path) -> None:
    path, errs = one_service(tmp_path, 'command = ["/bin/true"]\nworking_directory = "data"\n')
    assert errs == [f"{path}:2: working_directory: no such directory: {tmp_path / 'data'}"]


@pytest.mark.parametrize(("body", "line", "key", "message"), [
    ('type = "oneshot"\nready = "fd:3"', 2, "ready",
     "a oneshot service is ready when its command exits 0"),
    ('type = "forking"\nready = "fd:3"', 2, "ready",
     "a forking service is ready when its command exits 0"),
    ('type = "notify"\nready = "exec"', 2, "ready",
     "a notify service is ready when it sends READY=1"),
    ('pid_file = "/run/x.pid"', 1, "pid_file", "only a forking service has a pid file"),
    ('notify_access = "all"', 1, "notify_access", "only a notify service has a notify socket"),
    ("watchdog_sec = 5", 1, "watchdog_sec", "only a notify service can send WATCHDOG=1"),
    ("fd_store_max = 2", 1, "fd_store_max", "only a notify service can send FDSTORE=1"),
    ('type = "oneshot"\nrestart = "always"', 2, "restart",
     'a oneshot that exits 0 is done; use "on-failure" or "never"'),
    ("restart_delay = 5\nrestart_delay_max = 2", 2, "restart_delay_max",
     "must not be less than restart_delay"),
    ("restart_delay = 60", 1, "restart_delay", "must not be more than restart_delay_max (30s)"),
    ('requires = ["svc"]', 1, "requires", "a service cannot depend on itself"),
    ('wants = ["svc"]', 1, "wants", "a service cannot depend on itself"),
])
def test_inconsistent_keys(tmp_path: Path, body: str, line: int, key: str, message: str) -> None:
    path, errs = one_service(tmp_path, f'{body}\ncommand = ["true"]\n')
    assert errs == [f"{path}:{line}: {key}: {message}"]


def test_toml_syntax_error_with_its_line(tmp_path: Path) -> None:
    path, errs = one_service(tmp_path, 'command = ["true"]\n\nrestart = always\n')
    assert errs == [f"{path}:3: TOML syntax: Invalid value"]
    path, errs = one_service(tmp_path, 'command = ["true"]\ncommand = ["true"]\n')
    assert len(errs) == 1 and errs[0].startswith(f"{path}:2: TOML syntax: ")


def test_not_utf8(tmp_path: Path) -> None:
    write(tmp_path, {"svc.toml": b'command = ["true"]\n# \xff\n'})
    assert errors(tmp_path) == [f"{tmp_path / 'svc.toml'}: not UTF-8 text (byte 21)"]


def test_unreadable_file(tmp_path: Path) -> None:
    (tmp_path / "svc.toml").mkdir()
    assert errors(tmp_path) == [f"{tmp_path / 'svc.toml'}: cannot read: Is a directory"]


def test_missing_directory(tmp_path: Path) -> None:
    assert errors(tmp_path / "nope") == [
        f"{tmp_path / 'nope'}: cannot read the directory: No such file or directory"]


@pytest.mark.parametrize("name", ["-web", ".hidden", "a b", "web:1", "wéb", "_x"])
def test_bad_service_names(tmp_path: Path, name: str) -> None:
    write(tmp_path, {f"{name}.toml": 'command = ["true"]\n',
                     "ok_1.2@x-y.toml": 'command = ["true"]\n'})
    assert errors(tmp_path) == [
        f"{tmp_path / (name + '.toml')}: bad service name {name!r}: use letters, digits "
        "and _ . @ - (not first)"]


def test_missing_dependencies(tmp_path: Path) -> None:
    write(tmp_path, {
        "web.toml": 'command = ["true"]\nrequires = ["db", "ghost"]\nwants = ["cache"]\n',
        "db.toml": 'command = ["true"]\n',
        "broken.toml": 'command = ["true"\n',
        "api.toml": 'command = ["true"]\n\nrequires = ["broken"]\n',
    })
    web, api = tmp_path / "web.toml", tmp_path / "api.toml"
    assert sorted(errors(tmp_path)) == sorted([
        f"{tmp_path / 'broken.toml'}:1: TOML syntax: Unclosed array",
        f"{web}:2: requires: ghost: no such service",
        f"{web}:3: wants: cache: no such service",
        f"{api}:3: requires: broken: which is invalid",
    ])


def test_cycle_named_in_full(tmp_path: Path) -> None:
    write(tmp_path, {
        "a.toml": 'command = ["true"]\nrequires = ["b"]\n',
        "b.toml": 'command = ["true"]\nwants = ["c"]\n',
        "c.toml": '# c\ncommand = ["true"]\nrequires = ["a"]\n',
        "d.toml": 'command = ["true"]\nrequires = ["a"]\n',
    })
    assert errors(tmp_path) == [
        f"{tmp_path / 'a.toml'}:2: requires: dependency cycle: a -> b -> c -> a"]


def test_cycle_through_wants_blames_wants(tmp_path: Path) -> None:
    write(tmp_path, {
        "a.toml": 'command = ["true"]\nrequires = ["x"]\nwants = ["b"]\n',
        "b.toml": 'command = ["true"]\nrequires = ["a"]\n',
        "x.toml": 'command = ["true"]\n',
    })
    assert errors(tmp_path) == [
        f"{tmp_path / 'a.toml'}:3: wants: dependency cycle: a -> b -> a"]


def test_cycle_through_an_invalid_service_is_still_reported(tmp_path: Path) -> None:
    write(tmp_path, {
        "a.toml": 'command = ["true"]\nrequires = ["b"]\nbogus = 1\n',
        "b.toml": 'command = ["true"]\nrequires = ["a"]\n',
    })
    assert errors(tmp_path) == [
        f"{tmp_path / 'a.toml'}:3: bogus: unknown key",
        f"{tmp_path / 'b.toml'}:2: requires: a: which is invalid",
        f"{tmp_path / 'a.toml'}:2: requires: dependency cycle: a -> b -> a",
    ]


def test_settings_errors(tmp_path: Path) -> None:
    write(tmp_path, {"roost.toml": """
log_keep = 0
log_max_bytes = "1M"
log_console = "yes"
log_dir = 5
control = false
control_group = "no-such-group-xyz"
log_kep = 2
emergency_shell = ["/bin/sh", "-c", "\\u0000"]
log_syslog = "dev/log"
log_syslog_facility = "local8"
"""})
    path = tmp_path / "roost.toml"
    assert errors(tmp_path) == [
        f"{path}:2: log_keep: must be 1 or more, got 0",
        f"{path}:3: log_max_bytes: expected an integer, got a string",
        f"{path}:4: log_console: expected true or false, got a string",
        f"{path}:5: log_dir: expected a string, got an integer",
        f"{path}:6: control: expected a string, got a boolean",
        f"{path}:8: log_kep: unknown key (did you mean 'log_keep'?)",
        f"{path}:9: emergency_shell: contains a NUL character",
        f"{path}:10: log_syslog: expected true, false or a socket's absolute path of at "
        "most 107 bytes, got 'dev/log'",
        f"{path}:11: log_syslog_facility: expected a syslog facility (daemon, user, local0 "
        "to local7...), got 'local8'",
        f"{path}:7: control_group: no such group: no-such-group-xyz",
    ]


def test_settings_syntax_error(tmp_path: Path) -> None:
    write(tmp_path, {"roost.toml": "log_keep = 2\nlog_dir = \n"})
    assert errors(tmp_path) == [f"{tmp_path / 'roost.toml'}:2: TOML syntax: Invalid value"]


def test_every_error_is_collected(tmp_path: Path) -> None:
    write(tmp_path, {
        "a.toml": 'command = ["true"]\nrestart = "sometimes"\nstop_timeout = -1\n',
        "b.toml": 'comand = ["true"]\n',
        "c.toml": "command = [\n",
        "d.toml": 'command = ["true"]\nrequires = ["nope"]\n',
        "roost.toml": "log_keep = 0\n",
    })
    errs = errors(tmp_path)
    assert len(errs) == 7, errs
    with pytest.raises(ConfigInvalid) as caught:
        load(str(tmp_path))
    assert [str(e) for e in caught.value.errors] == errs
    assert str(caught.value) == "\n".join(errs)
    # A service with errors of its own is not part of the configuration.
    config, _ = read(str(tmp_path))
    assert list(config.services) == ["d"]


def test_error_repr(tmp_path: Path) -> None:
    error = config_load.ConfigError("/x.toml", "bad", key="k", line=3)
    assert str(error) == "/x.toml:3: k: bad"
    assert repr(error) == "ConfigError('/x.toml:3: k: bad')"
    assert str(config_load.ConfigError("/x.toml", "bad")) == "/x.toml: bad"


# -- robustness ----------------------------------------------------------------------------

toml_values = st.recursive(
    st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats() | st.text(max_size=10),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text("abcXYZ_=", max_size=4), children, max_size=3),
    max_leaves=6,
)


def toml_literal(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value != value:
            return "nan"
        if value in (float("inf"), float("-inf")):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return '"' + "".join(f"\\u{ord(c):04x}" if ord(c) < 0x10000 else f"\\U{ord(c):08x}"
                             for c in value) + '"'
    if isinstance(value, list):
        return "[" + ", ".join(toml_literal(v) for v in value) + "]"
    assert isinstance(value, dict)
    return "{" + ", ".join(f"{toml_literal(k)} = {toml_literal(v)}" for k, v in value.items()) + "}"


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.sampled_from(sorted(config_check.SERVICE_KEYS)), toml_values, max_size=5))
def test_any_value_is_accepted_or_named(tmp_path: Path, values: dict[str, object]) -> None:
    body = "".join(f"{key} = {toml_literal(value)}\n" for key, value in values.items())
    directory = tmp_path / "fuzz"
    write(directory, {"svc.toml": body})
    config, errs = read(str(directory))
    path = str(directory / "svc.toml")
    for error in errs:
        assert error.path == path
        assert error.key in (*values, "command", None) or error.key in config_check.SERVICE_KEYS
    assert ("svc" in config.services) == (not errs)


# -- roost check -----------------------------------------------------------------------------


def check(directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ROOST, "check", str(directory)], capture_output=True, text=True,
                          timeout=30, env={**os.environ, "ROOST_CONFIG": ""})


def test_roost_check_prints_every_error(tmp_path: Path) -> None:
    write(tmp_path, {
        "a.toml": 'command = ["true"]\nrequires = ["b"]\n',
        "b.toml": 'command = ["true"]\nrequires = ["a"]\nstop_signal = "NOPE"\n',
        "c.toml": 'command = ["no-such-program-xyz"]\nuser = "no-such-user-xyz"\n',
        "d d.toml": 'command = ["true"]\n',
        "e.toml": "command = \n",
        "roost.toml": "bogus = 1\n",
    })
    result = check(tmp_path)
    assert result.returncode == 1
    expected = errors(tmp_path)
    assert len(expected) == 8
    assert result.stdout.splitlines() == expected
    assert result.stderr.strip() == f"8 errors in {tmp_path}"


def test_roost_check_valid(tmp_path: Path) -> None:
    write(tmp_path, {"a.toml": 'command = ["true"]\n', "b.toml": 'command = ["true"]\n'
                     'requires = ["a"]\n'})
    result = check(tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (
        0, f"{tmp_path}: 2 services, valid\n", "")


def test_roost_check_demo_is_valid() -> None:
    from tests.support import REPO
    result = check(REPO / "examples" / "demo")
    assert result.returncode == 0, result.stdout + result.stderr


def test_roost_check_missing_directory(tmp_path: Path) -> None:
    result = check(tmp_path / "nope")
    assert result.returncode == 1
    assert "cannot read the directory: No such file or directory" in result.stdout
