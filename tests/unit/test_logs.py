"""Service log pipes: lines split and stamped, files rotated by size, tails read back."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from roost.kernel.loop import Loop
from roost.supervise import logs
from roost.supervise.logs import LogSettings, ServiceLog


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


def test_a_planted_link_is_not_followed(tmp_path: Path, loop: Loop) -> None:
    logs_dir = tmp_path / "logs"
    logs_dir.mkdir(mode=0o750)
    target = tmp_path / "target"
    target.write_text("keep\n")
    (logs_dir / "svc.log").symlink_to(target)
    log = service_log(logs_dir)
    log.emit("one", 0.0)
    log.emit("two", 0.0)
    log.close(loop)
    assert target.read_text() == "keep\n"
    assert log.lost == 2


def test_a_directory_others_may_write_in_is_refused(tmp_path: Path, loop: Loop) -> None:
    logs_dir = tmp_path / "logs"
    logs_dir.mkdir()
    logs_dir.chmod(0o770)
    log = service_log(logs_dir)
    with pytest.raises(logs.LogDirRefused, match="writable by group or others"):
        log.write_fd  # noqa: B018 - the property is the check a start makes
    logs_dir.chmod(0o1770)  # sticky: others may add files, not replace roost's
    assert log.write_fd >= 0
    log.emit("fine", 0.0)
    log.close(loop)
    assert (logs_dir / "svc.log").read_text().endswith(" fine\n")


def test_a_missing_directory_is_created_private(tmp_path: Path, loop: Loop) -> None:
    log = service_log(tmp_path / "a" / "b")
    log.emit("x", 0.0)
    log.close(loop)
    assert (tmp_path / "a" / "b" / "svc.log").exists()
    assert (tmp_path / "a" / "b").stat().st_mode & 0o777 == 0o750


def test_a_flood_is_read_in_budgets(loop: Loop) -> None:
    log = service_log(None)
    seen: list[str] = []
    log.followers.append(lambda name, when, text: seen.append(text))
    os.write(log.write_fd, (b"z" * 99 + b"\n") * 500)
    log._readable(0)
    assert len(seen) == logs.READ_BUDGET // 100  # one turn's worth, the rest left in the pipe
    for _ in range(10):
        log._readable(0)
    assert len(seen) == 500
    log.close(loop)


def test_a_full_console_drops_counts_and_says_so(loop: Loop,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from roost.kernel import console

    monkeypatch.setattr(console, "_loop", loop)
    monkeypatch.setattr(console, "_outs", {})
    r, w = os.pipe2(os.O_CLOEXEC)
    try:
        line = b"x" * 99 + b"\n"
        for _ in range(int((65536 + console.BUFFER_BYTES) / 100) + 50):
            console.write(w, line)  # never blocks: the pipe, then the buffer, then drops
        lost = console.dropped()
        assert lost > 0
        got = b""
        while b"console could not keep up" not in got:
            got += os.read(r, 1 << 20)
            loop.run_once(0.1)
        assert f"roost: {lost} lines dropped (console could not keep up)\n".encode() in got
    finally:
        for out in console._outs.values():
            out.forget()
        os.close(r)
        os.close(w)
