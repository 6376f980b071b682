"""Service log pipes: lines split and stamped, files rotated by size, tails read back."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from roost.kernel.loop import Loop
from roost.supervise import logs
from roost.supervise.logs import LogSettings, ServiceLog
from roost.supervise.readiness import parse


@pytest.fixture
def loop() -> Iterator[Loop]:
    yield Loop()


def service_log(directory: Path | None, max_bytes: int = 1 << 20, keep: int = 3) -> ServiceLog:
    return ServiceLog("svc", LogSettings(str(directory) if directory else None, max_bytes, keep,
                                         console=False))


def feed(log: ServiceLog, data: bytes) -> None:
    os.write(log.write_fd, data)
    log._read(None)  # everything written; the reactor would take it in budgets


def texts(log: ServiceLog) -> list[str]:
    return [text for _, text in log.tail or ()]


def test_lines_are_split_and_partials_kept(loop: Loop) -> None:
    log = service_log(None)
    seen: list[tuple[str, str]] = []
    log.followers.append(lambda name, when, text: seen.append((name, text)))
    feed(log, b"one\ntw")
    assert texts(log) == ["one"]
    feed(log, b"o\nthree\n\n")
    assert texts(log) == ["one", "two", "three", ""]
    feed(log, b"no newline")
    log.flush()
    assert texts(log)[-1] == "no newline"
    assert seen == [("svc", t) for t in ["one", "two", "three", "", "no newline"]]
    log.close(loop)


def test_long_lines_are_cut(loop: Loop) -> None:
    log = service_log(None)
    feed(log, b"x" * (logs.MAX_LINE * 2 + 10))
    assert [len(t) for t in texts(log)] == [logs.MAX_LINE, logs.MAX_LINE]
    log.close(loop)


def test_invalid_utf8_is_replaced(loop: Loop) -> None:
    log = service_log(None)
    feed(log, b"caf\xe9\n")
    assert texts(log) == ["caf\ufffd"]
    log.close(loop)


def test_the_memory_tail_is_bounded(loop: Loop) -> None:
    log = service_log(None)
    for n in range(logs.TAIL_LINES + 50):
        log.emit(str(n), 1.0)
    assert texts(log)[0] == "50"
    assert [t for _, t in log.read_tail(3)] == [str(n) for n in range(logs.TAIL_LINES + 47,
                                                                        logs.TAIL_LINES + 50)]
    assert log.read_tail(0) == []
    log.close(loop)


@pytest.mark.parametrize("keep", [1, 2, 4])
def test_rotation_keeps_the_count(tmp_path: Path, loop: Loop, keep: int) -> None:
    log = service_log(tmp_path, max_bytes=500, keep=keep)
    for n in range(400):
        log.emit(f"line {n:04d}", 1_700_000_000.0)
    log.close(loop)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["svc.log", *(f"svc.log.{i}" for i in range(1, keep + 1))]
    numbers: list[int] = []
    for name in [*(f"svc.log.{i}" for i in range(keep, 0, -1)), "svc.log"]:
        data = (tmp_path / name).read_bytes()
        assert len(data) <= 500
        numbers += [int(line[-4:]) for line in data.decode().splitlines()]
    assert numbers == list(range(numbers[0], 400))


def test_a_line_longer_than_the_limit_still_goes_out(tmp_path: Path, loop: Loop) -> None:
    log = service_log(tmp_path, max_bytes=10, keep=1)
    log.emit("a line much longer than ten bytes", 0.0)
    log.emit("another", 0.0)
    log.close(loop)
    assert "longer" in (tmp_path / "svc.log.1").read_text()
    assert "another" in (tmp_path / "svc.log").read_text()


def test_reopens_an_existing_file_at_its_size(tmp_path: Path, loop: Loop) -> None:
    (tmp_path / "svc.log").write_text("x" * 450 + "\n")
    log = service_log(tmp_path, max_bytes=500, keep=1)
    log.emit("0123456789" * 6, 0.0)
    log.close(loop)
    assert (tmp_path / "svc.log.1").read_text() == "x" * 450 + "\n"


def test_tail_from_files_when_memory_is_short(tmp_path: Path, loop: Loop) -> None:
    first = service_log(tmp_path, max_bytes=300, keep=3)
    for n in range(30):
        first.emit(f"old {n:02d}", 1_700_000_000.0)
    first.close(loop)
    # A new roost: nothing in memory, the files still there.
    second = service_log(tmp_path, max_bytes=300, keep=3)
    tail = second.read_tail(5)
    assert [t for _, t in tail] == [f"old {n:02d}" for n in range(25, 30)]
    assert all(abs(when - 1_700_000_000) < 2 for when, _ in tail)
    second.close(loop)


def test_notify_datagrams() -> None:
    assert parse(b"READY=1\nSTATUS=serving requests\n") == {"READY": "1",
                                                           "STATUS": "serving requests"}
    assert parse(b"MAINPID=12\nno-equals\n=x\nA=b=c") == {"MAINPID": "12", "A": "b=c"}
    assert parse(b"\xff=1") == {"\ufffd": "1"}
