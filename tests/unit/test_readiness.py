"""What counts as a notification on a service's notify socket, and from whom."""

from __future__ import annotations

import pytest

from roost.supervise.readiness import admitted, parse


def test_fields_of_a_datagram() -> None:
    assert parse(b"READY=1\nSTATUS=serving requests\n") == {"READY": "1",
                                                           "STATUS": "serving requests"}
    # A line without `=` (or with nothing before it) is ignored; a value may hold `=`.
    assert parse(b"MAINPID=12\nno-equals\n=x\nA=b=c") == {"MAINPID": "12", "A": "b=c"}


@pytest.mark.parametrize("data", [b"READY=1\0", b"READY=1\n\xff", b"\0"])
def test_a_nul_or_bytes_that_are_not_utf8_make_no_notification(data: bytes) -> None:
    assert parse(data) is None


MAIN = 100


@pytest.mark.parametrize(("access", "pid", "member", "expected"), [
    ("main", MAIN, True, True),
    ("main", 101, True, False),     # a child of the main process: not the main process
    ("main", 102, False, False),    # root, or the service's uid, outside the service
    ("exec", MAIN, True, True),
    ("exec", 101, True, False),
    ("all", 101, True, True),       # any process of the service
    ("all", 102, False, False),
    ("none", MAIN, True, False),
    ("all", 0, True, False),        # a sender in another PID namespace: nobody known
])
def test_who_may_speak_for_the_service(access: str, pid: int, member: bool,
                                       expected: bool) -> None:
    assert admitted(access, pid, MAIN, lambda p: member and p == pid) is expected


def test_no_main_process_no_main_notification() -> None:
    assert admitted("main", MAIN, None, lambda p: True) is False
