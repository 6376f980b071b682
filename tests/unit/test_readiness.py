"""What counts as a notification on a service's notify socket, and from whom."""

from __future__ import annotations

import array
import os
import socket

import pytest

from roost.core.exits import ExitStatus
from roost.core.machine import STOPPING, UP, Machine
from roost.supervise import command
from roost.supervise.channels import NotifySocket, parse
from roost.supervise.readiness import Notifications, admitted
from roost.supervise.runtime import Runtime
from tests.unit.test_service import config


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


# -- the notify socket: descriptors passed with a datagram ----------------------------------


class FakeLoop:
    """The reactor's face a notify socket and Notifications use; the clock is set by hand."""

    def __init__(self) -> None:
        self.time = 100.0
        self.watched: set[int] = set()

    def watch(self, fd: int, _events: int, _handler: object) -> None:
        self.watched.add(fd)

    def unwatch(self, fd: int) -> None:
        self.watched.discard(fd)

    def now(self) -> float:
        return self.time


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def test_descriptors_sent_with_a_datagram_are_closed_and_it_still_counts() -> None:
    # sd_notify_barrier() sends BARRIER=1 with a pipe's write end and waits for its read
    # end to hang up: roost must take the datagram and close what came with it.
    got: list[tuple[int, dict[str, str] | None]] = []
    pipe: list[int] = []

    def message(pid: int, fields: dict[str, str] | None, fds: list[int]) -> None:
        # Not yet closed while the datagram is handled: the sender still waits, alive, so
        # that it can be found to be a process of the service.
        with pytest.raises(BlockingIOError):
            os.read(pipe[0], 1)
        assert len(fds) == 4
        got.append((pid, fields))

    loop = FakeLoop()
    sock = NotifySocket(loop, "svc", message)
    before = open_fds()
    read_end, write_end = pipe[:] = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
    extra = [os.dup(write_end) for _ in range(3)]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as client:
            client.sendmsg([b"BARRIER=1"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                            array.array("i", [write_end, *extra]))],
                           0, "\0" + sock.address[1:])
        for fd in (write_end, *extra):
            os.close(fd)
        sock._readable(0)
        assert got == [(os.getpid(), {"BARRIER": "1"})]
        # Every copy roost received is closed: the reader sees end of file at once.
        assert os.read(read_end, 1) == b""
        os.close(read_end)
        assert open_fds() == before  # and roost keeps none of them
    finally:
        sock.close()


# -- what an admitted notification does -------------------------------------------------------


class FakeTracker:
    def __init__(self, members: set[int]) -> None:
        self.members = members
        self.unwatched: list[str] = []

    def belongs(self, _name: str, pid: int) -> bool:
        return pid in self.members

    def unwatch_main(self, name: str) -> None:
        self.unwatched.append(name)


class FakeDaemons:
    def __init__(self) -> None:
        self.followed: list[int] = []

    def follow(self, rt: Runtime, pid: int) -> bool:
        self.followed.append(pid)
        rt.machine.main_changed(pid, 0.0)
        return True


class FakeChild:
    def __init__(self, pid: int) -> None:
        self.pid = pid


class FakeLog:
    lost = 0


class World:
    """A notify service up (main pid MAIN) and the Notifications that speak for it."""

    def __init__(self, **values: object) -> None:
        self.loop = FakeLoop()
        self.tracker = FakeTracker({MAIN, 101, 102})
        self.daemons = FakeDaemons()
        self.actions: list[str] = []
        cfg = config(type="notify", start_timeout=5.0, **values)
        self.rt = Runtime(Machine(cfg, self.loop.time, rng=lambda: 0.5), FakeLog())
        self.notifications = Notifications(self.loop, self.tracker, self.daemons,
                                           lambda rt, asked: self.actions.extend(map(repr, asked)))
        m = self.rt.machine
        m.start(self.loop.time)
        self.rt.child = FakeChild(MAIN)
        m.spawned(MAIN, self.loop.time)

    def send(self, data: bytes, pid: int = MAIN) -> list[str]:
        self.actions = []
        self.loop.time += 0.5
        self.notifications.message(self.rt, pid, parse(data))
        return self.actions

    def record(self) -> dict[str, object]:
        return self.rt.record(self.loop.time, None)


def test_ready_then_watchdog_keepalive_trigger_and_usec() -> None:
    w = World(watchdog_sec=2.0)
    assert w.send(b"READY=1\nSTATUS=serving") == ["Disarm('start')", "Arm('watchdog', 2.000)"]
    assert w.record()["status"] == "serving"
    assert w.send(b"WATCHDOG=1") == ["Arm('watchdog', 2.000)"]
    assert w.send(b"WATCHDOG_USEC=3500000") == ["Arm('watchdog', 3.500)"]
    assert w.send(b"WATCHDOG=trigger")[2:] == ["Kill(6)", "Arm('stop', 10.000)"]
    assert (w.rt.machine.state, w.rt.machine.reason) == (STOPPING, "watchdog")


def test_extend_timeout_usec() -> None:
    w = World()
    assert w.send(b"EXTEND_TIMEOUT_USEC=9000000") == ["Arm('start', 9.000)"]
    assert w.send(b"EXTEND_TIMEOUT_USEC=1000000") == []  # sooner than the timeout: no change


@pytest.mark.parametrize("field", [b"WATCHDOG_USEC=-1", b"WATCHDOG_USEC=1e6",
                                   b"EXTEND_TIMEOUT_USEC=\xd9\xa3".decode().encode(),
                                   b"EXTEND_TIMEOUT_USEC=99999999999999999999999",
                                   b"MAINPID=abc", b"MAINPID=0", b"ERRNO=x"])
def test_a_field_that_is_not_a_number_is_ignored_and_counted(field: bytes) -> None:
    w = World(watchdog_sec=2.0)
    w.send(b"READY=1")
    assert w.send(field) == []
    assert w.rt.notes.ignored == 1 and w.daemons.followed == []
    assert w.rt.machine.state == UP and w.rt.notes.errno is None


def test_reloading_and_stopping_are_shown_as_the_phase() -> None:
    w = World()
    w.send(b"READY=1")
    assert w.record()["phase"] is None
    began = int((w.loop.time - 2.0) * 1e6)
    w.send(b"RELOADING=1\nMONOTONIC_USEC=%d" % began)
    record = w.record()
    assert record["phase"] == "reloading" and record["phase_since"] == 2.5
    w.send(b"READY=1")
    assert w.record()["phase"] is None
    w.send(b"STOPPING=1")
    assert w.record()["phase"] == "stopping"
    w.rt.machine.exited(ExitStatus(code=0), w.loop.time)
    assert w.record()["phase"] is None  # the phase of a run that is over


def test_errno_and_exit_status_go_with_the_exit_of_their_run() -> None:
    w = World()
    w.send(b"READY=1")
    w.send(b"ERRNO=2\nEXIT_STATUS=3")
    assert w.record()["last_exit"] is None
    w.rt.machine.exited(ExitStatus(code=3), w.loop.time)
    expected = "exited 3 (ERRNO=2 (ENOENT: No such file or directory), EXIT_STATUS=3)"
    assert w.record()["last_exit"] == expected
    w.rt.notes.spawned()  # restarted: still shown with that exit, not with the new run
    w.rt.machine.start(w.loop.time)
    w.rt.machine.spawned(MAIN + 10, w.loop.time)
    assert w.record()["last_exit"] == expected
    w.rt.machine.exited(ExitStatus(code=1), w.loop.time)
    assert w.record()["last_exit"] == "exited 1"


def test_mainpid_only_for_a_process_of_the_service() -> None:
    w = World()
    w.send(b"MAINPID=4242\nREADY=1")  # not a process of the service: refused, READY taken
    assert w.daemons.followed == [] and w.rt.machine.pid == MAIN and w.rt.notes.ignored == 1
    assert w.rt.machine.state == UP
    w.send(b"MAINPID=101")
    assert w.daemons.followed == [101] and w.rt.machine.pid == 101
    # Now the main process is 101: the old one speaks for the service no more.
    w.send(b"STATUS=from the old main", pid=MAIN)
    assert w.rt.notify_refused == 1 and w.record()["status"] == ""
    w.send(b"MAINPID=100", pid=101)  # back to the process roost started
    assert w.tracker.unwatched == ["svc"] and w.rt.machine.pid == MAIN
    assert w.daemons.followed == [101]


def test_a_watchdog_is_announced_in_the_main_process_environment() -> None:
    cfg = config(type="notify", watchdog_sec=1.5)
    cmd = command.build(cfg, command.inherited({"WATCHDOG_USEC": "1", "WATCHDOG_PID": "1",
                                                "PATH": "/bin"}),
                        log_fds=(1, 1), notify_socket="@roost/notify/x")
    assert (cmd.env["WATCHDOG_USEC"], cmd.env_pid_vars) == ("1500000", ("WATCHDOG_PID",))
    # None without watchdog_sec: what roost itself was given is not passed on.
    cmd = command.build(config(type="notify"), command.inherited(
        {"WATCHDOG_USEC": "1", "WATCHDOG_PID": "1"}), log_fds=(1, 1), notify_socket="@x")
    assert "WATCHDOG_USEC" not in cmd.env and "WATCHDOG_PID" not in cmd.env
    assert cmd.env_pid_vars == ()


def test_a_descriptor_the_service_stores_is_kept_and_the_rest_closed() -> None:
    # FDSTORE=1: what the handler takes out of the list stays open, in roost's hands.
    kept: list[int] = []

    def message(pid: int, fields: dict[str, str] | None, fds: list[int]) -> None:
        kept.append(fds.pop(0))

    loop = FakeLoop()
    sock = NotifySocket(loop, "svc", message)
    before = open_fds()
    read_end, write_end = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as client:
            client.sendmsg([b"FDSTORE=1"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                            array.array("i", [read_end, write_end]))],
                           0, "\0" + sock.address[1:])
        sock._readable(0)
        (fd,) = kept
        os.write(write_end, b"x")
        assert os.read(fd, 1) == b"x", "the stored copy is the pipe's read end"
        os.close(write_end)
        os.close(read_end)
        assert open_fds() == before | {str(fd)}, "the other copy roost received was closed"
        os.close(fd)
    finally:
        sock.close()
