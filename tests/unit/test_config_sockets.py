"""`sockets`, as the configuration check reads it: what each form becomes, and each mistake
named by file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from roost.config.load import read
from roost.supervise import command
from roost.supervise.sockets import shown
from tests.unit.test_config import one_service, write


def sockets_of(tmp_path: Path, value: str) -> list[list[object]]:
    write(tmp_path, {"svc.toml": f'command = ["sleep", "60"]\nsockets = {value}\n'})
    config, errs = read(str(tmp_path))
    assert errs == []
    return config.services["svc"].sockets


def test_every_form_and_its_defaults(tmp_path: Path) -> None:
    got = sockets_of(tmp_path, '["tcp:127.0.0.1:8080", "tcp6:[::1]:8080", "udp:localhost:53", '
                     '"unix:/run/a.sock", "unix:@abstract", "fifo:/run/a.fifo", '
                     '{ listen = "unix:/run/b.sock", name = "control", mode = "0660", '
                     'user = "0", group = "0", backlog = 16 }]')
    assert got == [
        ["tcp", "127.0.0.1", 8080, "", 0o666, None, None, 4096],
        ["tcp6", "::1", 8080, "", 0o666, None, None, 4096],
        ["udp", "127.0.0.1", 53, "", 0o666, None, None, 4096],
        ["unix", "/run/a.sock", 0, "", 0o666, None, None, 4096],
        ["unix", "@abstract", 0, "", 0o666, None, None, 4096],
        ["fifo", "/run/a.fifo", 0, "", 0o666, None, None, 4096],
        ["unix", "/run/b.sock", 0, "control", 0o660, "0", "0", 16],
    ]
    # As a status line or an error names them: what the file said.
    assert [shown(s) for s in got[:3]] == ["tcp:127.0.0.1:8080", "tcp6:[::1]:8080",
                                          "udp:127.0.0.1:53"]


def test_tcp_and_udp_may_share_a_port_but_nothing_is_listed_twice(tmp_path: Path) -> None:
    assert len(sockets_of(tmp_path, '["tcp:127.0.0.1:53", "udp:127.0.0.1:53"]')) == 2
    path, errs = one_service(tmp_path, 'command = ["true"]\nsockets = ["unix:/run/a", '
                             '"fifo:/run/a"]\n')
    assert errs == [f"{path}:2: sockets: 'fifo:/run/a': listed twice"]


def test_the_descriptors_go_from_fd_3_with_the_listen_variables(tmp_path: Path) -> None:
    write(tmp_path, {"svc.toml": 'command = ["true"]\n'})
    config, _ = read(str(tmp_path))
    cmd = command.build(config.services["svc"], {}, log_fds=(1, 1))
    command.hand_over(cmd, [("web", 10), ("control", 11)])
    assert (cmd.fds[3], cmd.fds[4]) == (10, 11)
    assert (cmd.env["LISTEN_FDS"], cmd.env["LISTEN_FDNAMES"]) == ("2", "web:control")
    assert "LISTEN_PID" in cmd.env_pid_vars  # the child's own pid, set after fork


@pytest.mark.parametrize(("value", "message"), [
    ('"tcp:127.0.0.1:80"', "expected a list like [\"tcp:127.0.0.1:8080\"], got "
     "'tcp:127.0.0.1:80'"),
    ("[]", "expected a list like [\"tcp:127.0.0.1:8080\"], got []"),
    ('["http:127.0.0.1:80"]', "'http:127.0.0.1:80': 'http' is not one of tcp, tcp6, udp, "
     "udp6, unix, fifo"),
    ('["8080"]', "expected \"KIND:ADDRESS\" (KIND one of tcp, tcp6, udp, udp6, unix, fifo), "
     "got '8080'"),
    ('["tcp:example.com:80"]', "'tcp:example.com:80': 'example.com' is not an IPv4 address "
     "(roost resolves no names)"),
    ('["tcp:127.0.0.1:0"]', "'tcp:127.0.0.1:0': the port must be 1 to 65535"),
    ('["tcp:127.0.0.1:http"]', "'tcp:127.0.0.1:http': the port must be 1 to 65535"),
    ('["tcp6:::1:80"]', "'tcp6:::1:80': expected [ADDRESS]:PORT, like [::1]:8080"),
    ('["tcp6:[127.0.0.1]:80"]', "'tcp6:[127.0.0.1]:80': '127.0.0.1' is not an IPv6 address "
     "(roost resolves no names)"),
    ('["unix:run/a.sock"]', "'unix:run/a.sock': expected an absolute path or @name"),
    ('["fifo:@x"]', "'fifo:@x': expected an absolute path"),
    ('["unix:/' + "a" * 120 + '"]', "a socket's path is at most 107 bytes"),
    ('[{ name = "x" }]', "a socket table needs `listen`, like \"tcp:127.0.0.1:8080\""),
    ('[{ listen = "unix:/run/a", port = 1 }]', "'port': not a socket key (one of listen, name, "
     "mode, user, group, backlog)"),
    ('[{ listen = "unix:/run/a", mode = "0999" }]', "mode: expected an octal mode like "
     "\"0660\", got '0999'"),
    ('[{ listen = "tcp:127.0.0.1:80", mode = "0600" }]', "'tcp:127.0.0.1:80': mode, user and "
     "group are a file's: unix or fifo sockets with a path only"),
    ('[{ listen = "unix:/run/a", name = "a:b" }]', "name: 1 to 255 printable ASCII characters "
     "without ':', got 'a:b'"),
    ('[{ listen = "unix:/run/a", backlog = 0 }]', "backlog: expected 1 to 65535, got 0"),
    ('[{ listen = "unix:/run/a", user = "a b" }]', "not a user or group name: 'a b'"),
])
def test_bad_sockets(tmp_path: Path, value: str, message: str) -> None:
    path, errs = one_service(tmp_path, f'command = ["true"]\nsockets = {value}\n')
    assert len(errs) == 1 and errs[0].startswith(f"{path}:2: sockets: "), errs
    assert message in errs[0], errs


def test_tcp_readiness_on_its_own_socket_is_refused(tmp_path: Path) -> None:
    path, errs = one_service(tmp_path, 'command = ["true"]\nsockets = ["tcp:127.0.0.1:80"]\n'
                             'ready = "tcp:127.0.0.1:80"\n')
    assert errs == [f"{path}:3: ready: names one of its own sockets: roost accepts there "
                    "itself, so the service would be ready at once"]
