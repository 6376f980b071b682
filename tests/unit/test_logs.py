"""Service log pipes: lines split and stamped, files rotated by size, tails read back."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from roost.kernel.logdir import LogDirRefused
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
    os.write(log.fds(True)[0], data)
    log._read(logs.OUT, None)  # everything written; the reactor would take it in budgets


def texts(log: ServiceLog) -> list[str]:
    return [text for _, _, text in log.tail or ()]


def test_lines_are_split_and_partials_kept(loop: Loop) -> None:
    log = service_log(None)
    seen: list[tuple[str, str]] = []
    log.follow(lambda name, when, stream, text: seen.append((name, text)))
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
    assert [t for _, _, t in log.read_tail(3)] == [str(n) for n in range(logs.TAIL_LINES + 47,
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
    assert [t for _, _, t in tail] == [f"old {n:02d}" for n in range(25, 30)]
    assert all(abs(when - 1_700_000_000) < 2 for when, _, _ in tail)
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
    with pytest.raises(LogDirRefused, match="writable by group or others"):
        log.fds(False)  # the check a start makes
    logs_dir.chmod(0o1770)  # sticky: others may add files, not replace roost's
    assert min(log.fds(False)) >= 0
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
    log.follow(lambda name, when, stream, text: seen.append(text))
    os.write(log.fds(True)[0], (b"z" * 99 + b"\n") * 500)
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


def test_stderr_is_a_stream_of_its_own(tmp_path: Path, loop: Loop,
                                       capfd: pytest.CaptureFixture[str]) -> None:
    log = ServiceLog("svc", LogSettings(str(tmp_path), console=True, console_fd=1))
    log.attach(loop)
    seen: list[tuple[str, str]] = []
    log.follow(lambda name, when, stream, text: seen.append((stream, text)))
    out, err = log.fds(False)
    assert out != err
    os.write(err, b"trouble\nhalf")
    os.write(out, b"fine\n")
    log.settle()  # the run is over: its unfinished line ends too
    assert sorted(seen) == [("err", "half"), ("err", "trouble"), ("out", "fine")]
    assert sorted((s, t) for _, s, t in log.read_tail(10)) == sorted(seen)
    lines = (tmp_path / "svc.log").read_text().splitlines()
    assert sorted(line.split(" ", 1)[1] for line in lines) == [
        "err half", "err trouble", "out fine"]
    console_out = capfd.readouterr().out
    assert " svc ! trouble\n" in console_out and " svc | fine\n" in console_out
    # Merged: one pipe for both, as `stderr = "stdout"` asks.
    assert log.fds(True) == (out, out)
    log.close(loop)


def test_each_new_run_is_marked_with_how_the_last_ended(tmp_path: Path, loop: Loop,
                                                        capfd: pytest.CaptureFixture[str]) -> None:
    log = ServiceLog("svc", LogSettings(str(tmp_path), console=True, console_fd=1))
    log.begin_run("never shown")
    log.emit("first run", 1.0)
    log.begin_run("killed by SIGKILL")
    log.emit("second run", 2.0)
    assert [(s, t) for _, s, t in log.read_tail(10)] == [
        ("out", "first run"), ("roost", "-- svc restarted: killed by SIGKILL --"),
        ("out", "second run")]
    assert " roost -- svc restarted: killed by SIGKILL --\n" in \
        (tmp_path / "svc.log").read_text()
    assert "restarted" not in capfd.readouterr().out  # the supervisor's own lines say it there
    log.close(loop)


def test_lines_read_back_from_files_keep_their_stream(tmp_path: Path, loop: Loop) -> None:
    (tmp_path / "svc.log").write_text(
        "2026-01-02T03:04:05.006 an older line, before lines named their stream\n"
        "2026-01-02T03:04:06.000 out plain\n"
        "2026-01-02T03:04:07.000 err bad\n"
        "2026-01-02T03:04:08.000 roost -- svc restarted: exited 1 --\n"
        "2026-01-02T03:04:09.000 out \n")
    log = service_log(tmp_path)
    assert [(s, t) for _, s, t in log.read_tail(5)] == [
        ("out", "an older line, before lines named their stream"), ("out", "plain"),
        ("err", "bad"), ("roost", "-- svc restarted: exited 1 --"), ("out", "")]
    log.close(loop)


def test_lines_go_to_syslog_when_configured(tmp_path: Path, loop: Loop) -> None:
    import socket

    from roost.kernel.syslog import Syslog

    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(tmp_path / "log"))
    server.settimeout(5)
    log = ServiceLog("svc", LogSettings(None, console=False, syslog=Syslog(str(tmp_path / "log"))))
    try:
        log.emit("hello", 1.0)
        log.emit("oops", 1.0, logs.ERR)
        log.begin_run("x")
        log.begin_run("exited 1")  # roost's own word stays out of syslog
        log.emit("again", 2.0)
        got = [server.recv(4096) for _ in range(3)]
        assert [(g[:4], g.rsplit(b": ", 1)[1]) for g in got] == [
            (b"<30>", b"hello"), (b"<27>", b"oops"), (b"<30>", b"again")]
    finally:
        server.close()
        log.close(loop)
