"""`ready` in every protocol and the `health` table, as the configuration check reads them:
what is accepted and what it becomes, and each mistake named by file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from roost.config.load import read
from roost.core.model import HealthCheck
from tests.unit.test_config import check, one_service, write


def health_of(tmp_path: Path, body: str) -> HealthCheck:
    write(tmp_path, {"svc.toml": 'command = ["sleep", "60"]\n' + body})
    config, errs = read(str(tmp_path))
    assert errs == []
    health = config.services["svc"].health
    assert health is not None
    return health


def test_ready_forms_are_accepted_and_normalised(tmp_path: Path) -> None:
    for value, kept in [("pipevar:READY_FD", "pipevar:READY_FD"),
                        ("file:/run/db/ready", "file:/run/db/ready"),
                        ("tcp:127.0.0.1:5432", "tcp:127.0.0.1:5432"),
                        ("tcp:localhost:80", "tcp:127.0.0.1:80"),
                        ("tcp:[::1]:8080", "tcp:[::1]:8080")]:
        write(tmp_path, {"svc.toml": f'command = ["true"]\nready = "{value}"\n'})
        config, errs = read(str(tmp_path))
        assert errs == [], value
        assert config.services["svc"].ready == kept
    assert config.services["svc"].ready_fd is None


def test_pipevar_gets_a_descriptor_and_its_variable(tmp_path: Path) -> None:
    from roost.supervise import command

    write(tmp_path, {"svc.toml": 'command = ["true"]\nready = "pipevar:MY_READY"\n'})
    config, _ = read(str(tmp_path))
    svc = config.services["svc"]
    cmd = command.build(svc, {}, log_fds=(1, 1), ready_fd=42)
    assert cmd.fds[svc.ready_fd or 0] == 42
    assert cmd.env["MY_READY"] == str(svc.ready_fd)


@pytest.mark.parametrize(("value", "message"), [
    ('"pipevar:1X"', "expected a variable name after pipevar:, got '1X'"),
    ('"pipevar:"', "expected a variable name after pipevar:, got ''"),
    ('"pipevar:A-B"', "expected a variable name after pipevar:, got 'A-B'"),
    ('"pipevar:NOTIFY_SOCKET"', "$NOTIFY_SOCKET is not roost's to set for a readiness pipe"),
    ('"file:run/ready"', "expected an absolute path after file:, got 'run/ready'"),
    ('"tcp:db.example:5432"', "expected a numeric address (IPv6 in brackets) or localhost, got "
     "'db.example': a name would need a lookup, which blocks"),
    ('"tcp:::1:80"', "expected a numeric address (IPv6 in brackets) or localhost, got '::1': "
     "a name would need a lookup, which blocks"),
    ('"tcp:127.0.0.1:0"', "the port must be from 1 to 65535, got '0'"),
    ('"tcp:127.0.0.1:99999"', "the port must be from 1 to 65535, got '99999'"),
    ('"tcp:127.0.0.1"', "expected HOST:PORT, got '127.0.0.1'"),
])
def test_bad_ready(tmp_path: Path, value: str, message: str) -> None:
    path, errs = one_service(tmp_path, f'command = ["true"]\nready = {value}\n')
    assert errs == [f"{path}:2: ready: {message}"]


def test_a_health_table_with_every_key(tmp_path: Path) -> None:
    health = health_of(tmp_path, '[health]\nhttp = "http://127.0.0.1:8080/healthz?full=1"\n'
                       "interval = 2\ntimeout = 0.5\nretries = 5\nstart_period = 30\n")
    assert (health.kind, health.host, health.port, health.path) == (
        "http", "127.0.0.1", 8080, "/healthz?full=1")
    assert (health.interval, health.timeout, health.retries, health.start_period) == (
        2.0, 0.5, 5, 30.0)


def test_health_defaults_and_kinds(tmp_path: Path) -> None:
    health = health_of(tmp_path, 'health = { tcp = "localhost:6379" }\n')
    assert (health.kind, health.host, health.port) == ("tcp", "127.0.0.1", 6379)
    assert (health.interval, health.timeout, health.retries, health.start_period) == (
        10.0, 5.0, 3, 0.0)
    health = health_of(tmp_path, 'health = { http = "http://[::1]" }\n')
    assert (health.host, health.port, health.path) == ("::1", 80, "/")
    health = health_of(tmp_path, 'health = { command = ["true", "--x"] }\n')
    assert (health.kind, health.argv) == ("command", ["true", "--x"])


def test_health_survives_the_reader(tmp_path: Path) -> None:
    from roost.config import reader

    write(tmp_path, {"svc.toml": 'command = ["true"]\nhealth = { tcp = "127.0.0.1:1", '
                                 "retries = 7 }\n"})
    config, errs = reader.read(str(tmp_path))
    assert errs == []
    health = config.services["svc"].health
    assert isinstance(health, HealthCheck)
    assert (health.kind, health.port, health.retries) == ("tcp", 1, 7)
    direct = read(str(tmp_path))[0].services["svc"]
    assert config.services["svc"].fingerprint() == direct.fingerprint()


@pytest.mark.parametrize(("body", "line", "message"), [
    ('health = { }', 2, "expected exactly one of command, tcp or http"),
    ('health = { tcp = "127.0.0.1:1", http = "http://127.0.0.1/" }', 2,
     "expected exactly one of command, tcp or http, got tcp and http"),
    ('[health]\ncommand = ["true"]\ninterval = 0', 2,
     "interval: must be from 0.1 to 1000000 seconds, got 0"),
    ('health = { tcp = "127.0.0.1:1", timeout = "5s" }', 2,
     "timeout: expected a number of seconds, got '5s'"),
    ('health = { tcp = "127.0.0.1:1", start_period = -1 }', 2,
     "start_period: must be from 0 to 1000000 seconds, got -1"),
    ('health = { tcp = "127.0.0.1:1", retries = 0 }', 2,
     "retries: expected an integer from 1 to 1000, got 0"),
    ('health = { tcp = "127.0.0.1:1", retries = 1.5 }', 2,
     "retries: expected an integer from 1 to 1000, got 1.5"),
    ('health = { tcp = "127.0.0.1:1", tries = 3 }', 2,
     "unknown key 'tries' (expected command, http, interval, retries, start_period, tcp, "
     "timeout)"),
    ('health = { tcp = "db:5432" }', 2, "tcp: expected a numeric address (IPv6 in brackets) "
     "or localhost, got 'db': a name would need a lookup, which blocks"),
    ('health = { tcp = 5432 }', 2, "tcp: expected a string, got 5432"),
    ('health = { http = "https://127.0.0.1/" }', 2, "http: expected a URL like "
     "\"http://127.0.0.1:8080/healthz\", got 'https://127.0.0.1/' (plain http only)"),
    ('health = { http = "http://127.0.0.1/a b" }', 2, "http: the path must be printable "
     "ASCII without spaces, at most 4096 characters, got '/a b'"),
    ('health = { command = [] }', 2, "command: expected a non-empty list of strings, got []"),
    ('health = { command = "true" }', 2,
     "command: expected a non-empty list of strings, got 'true'"),
    ('\n\n[health]\ncommand = ["no-such-probe-program"]', 4,
     "health command not found: no-such-probe-program"),
])
def test_bad_health(tmp_path: Path, body: str, line: int, message: str) -> None:
    path, errs = one_service(tmp_path, f'command = ["true"]\n{body}\n')
    assert errs == [f"{path}:{line}: health: {message}"]


def test_a_oneshot_has_no_health(tmp_path: Path) -> None:
    path, errs = one_service(tmp_path, 'command = ["true"]\ntype = "oneshot"\n'
                             'health = { command = ["true"] }\n')
    assert errs == [f"{path}:3: health: a oneshot is never up to be probed"]


def test_roost_check_names_a_missing_probe_program(tmp_path: Path) -> None:
    write(tmp_path, {"web.toml": 'command = ["sleep", "60"]\n'
                                 'health = { command = ["/nonexistent/probe"] }\n'})
    out = check(tmp_path)
    assert out.returncode == 1, out
    assert out.stdout == (f"{tmp_path / 'web.toml'}:2: health: health command not found: "
                          "/nonexistent/probe\n")
