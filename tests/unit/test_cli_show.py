"""What the command line prints and how it parses: the status table and detail, a
transaction's one-line outcome, exit statuses, --help texts and bad usage."""

from __future__ import annotations

import pytest

from roost import cli, cli_parser, cli_show
from roost.control import protocol


def record(name: str, state: str = "up", **fields: object) -> dict[str, object]:
    base: dict[str, object] = {
        "name": name, "state": state, "pid": 42 if state == "up" else None, "type": "simple",
        "since": 75.0, "uptime": 75.0 if state == "up" else None, "restarts": 0,
        "last_exit": None, "reason": "", "status": "", "want": True, "tracking": "pidfd",
        "log_dropped": 0}
    base.update(fields)
    return base


def test_the_table_has_status_and_reason_in_their_own_columns() -> None:
    lines = cli_show.table([
        record("web", status="serving 3 clients"),
        record("api", "down", reason="waiting for migrate", last_exit="exited 3"),
    ])
    assert lines[0].split() == ["NAME", "STATE", "PID", "UPTIME", "RESTARTS", "STATUS",
                                "REASON"]
    status_at = lines[0].index("STATUS")
    reason_at = lines[0].index("REASON")
    assert lines[1][status_at:].startswith("serving 3 clients")
    assert lines[1][reason_at:].strip() == "-"
    assert lines[2][status_at:reason_at].strip() == "-"
    assert lines[2][reason_at:] == "waiting for migrate"
    assert lines[1].split()[:5] == ["web", "up", "42", "1m15s", "0"]
    # The last exit is no longer passed off as a reason: it is in the detail.
    assert "exited 3" not in "\n".join(lines)


def test_colour_only_on_a_terminal_and_never_with_no_color() -> None:
    assert cli_show.wants_colour(True, {})
    assert not cli_show.wants_colour(False, {})
    assert not cli_show.wants_colour(True, {"NO_COLOR": "1"})
    # no-color.org: an empty NO_COLOR is as if unset.
    assert cli_show.wants_colour(True, {"NO_COLOR": ""})
    coloured = cli_show.table([record("web"), record("bad", "failed")], colour=True)
    assert "\033[32mup" in coloured[1] and "\033[31;1mfailed" in coloured[2]
    assert "\033" not in "".join(cli_show.table([record("web")], colour=False))


def test_what_a_service_chose_cannot_drive_the_terminal() -> None:
    lines = cli_show.table([record("web", status="\033[2Jgotcha\r")])
    assert "\033" not in lines[1] and "\r" not in lines[1]
    assert "\\x1b[2Jgotcha\\r" in lines[1]
    detail = cli_show.detail(record("web", reason="a\nb"), None, None)
    assert all("\n" not in line for line in detail)


def test_health_has_a_column_only_where_a_service_has_a_check() -> None:
    plain = cli_show.table([record("web"), record("db")])
    assert "HEALTH" not in plain[0]
    lines = cli_show.table([record("web", health="healthy"), record("db"),
                            record("api", "stopping", health="unhealthy")])
    assert lines[0].split()[:4] == ["NAME", "STATE", "HEALTH", "PID"]
    assert [line.split()[2] for line in lines[1:]] == ["healthy", "-", "unhealthy"]
    detail = cli_show.detail(record("web", health="starting", health_failures=2,
                                    health_checks=2, health_last="exited 1: \033[2Jno"),
                             None, None)
    assert "    health: starting (2 failed in a row)" in detail
    assert "last probe: exited 1: \\x1b[2Jno" in detail


def test_an_unhealthy_service_is_not_up() -> None:
    assert cli_show.status_exit([record("a", health="healthy")], named=True) == 0
    assert cli_show.status_exit([record("a", health="starting")], named=True) == 0
    assert cli_show.status_exit([record("a", health="unhealthy")], named=True) == 3
    assert cli_show.status_exit([record("a"), record("b", health="unhealthy")],
                                named=False) == 3


def test_status_exit_follows_systemctl_is_active() -> None:
    up, done = record("a"), record("b", "done")
    failed = record("flaky", "failed", reason="exited 1")
    stopped = record("idle", "down", want=False)
    assert cli_show.status_exit([up, done], named=True) == 0
    assert cli_show.status_exit([failed], named=True) == 3
    # Named, a service stopped on purpose is not up; unnamed, it is not asked about.
    assert cli_show.status_exit([stopped], named=True) == 3
    assert cli_show.status_exit([up, stopped], named=False) == 0
    assert cli_show.status_exit([up, stopped, failed], named=False) == 3
    assert cli_show.status_exit([up, record("s", "starting")], named=False) == 3
    # What the configuration could not set up (want null) is a failure too.
    assert cli_show.status_exit([up, record("bad", "failed", want=None)], named=False) == 3


def test_check_names_what_is_not_ready_and_counts_unhealthy() -> None:
    up, done = record("a"), record("b", "done")
    stopped = record("idle", "down", want=False)
    assert cli_show.not_ready_line([up, done, stopped]) == ""
    assert cli_show.not_ready_line([]) == ""
    line = cli_show.not_ready_line([up, record("web", "backoff"), record("bad", "failed",
                                                                         want=None)])
    assert line == "not ready: web backoff, bad failed (1 up, 1 backoff, 1 failed)"
    # A health field, where a record has one, decides too; without one a service is healthy.
    assert cli_show.not_ready_line([record("db", health="unhealthy")]) == \
        "not ready: db unhealthy (1 up)"
    assert cli_show.not_ready_line([record("db", health="healthy")]) == ""
    many = [record(f"s{i}", "starting") for i in range(12)]
    assert cli_show.not_ready_line(many).endswith("s9 starting and 2 more (12 starting)")
    # A name a service chose cannot drive the terminal here either.
    assert "\x1b" not in cli_show.not_ready_line([record("\x1b[2J", "failed")])


def test_the_detail_block() -> None:
    tree = {"service": "web", "argv": ["/usr/bin/web", "--port", "80", "two words"],
            "tracking": "cgroup", "cgroup": "/sys/fs/cgroup/roost/web", "main": 42,
            "processes": [{"pid": 42, "depth": 0, "main": True, "command": "/usr/bin/web"},
                          {"pid": 43, "depth": 1, "main": False, "command": "worker"}]}
    log = [{"service": "web", "time": 1_700_000_000.0, "line": "listening on :80"}]
    lines = cli_show.detail(record("web", status="ready", restarts=2, last_exit="exited 1"),
                            tree, log)
    text = "\n".join(lines)
    assert lines[0] == "web - up (pid 42)"
    assert "   command: /usr/bin/web --port 80 'two words'" in lines
    assert "  tracking: cgroup (/sys/fs/cgroup/roost/web)" in lines
    assert "     since: 1m15s ago, up 1m15s" in lines
    assert "    status: ready" in lines and " last exit: exited 1" in lines
    assert "  restarts: 2" in lines
    assert "       42* /usr/bin/web" in lines and "       43    worker" in lines
    assert text.endswith("listening on :80")
    assert "control group" not in text
    # Without the right to read them: said so, nothing invented.
    lines = cli_show.detail(record("web"), None, None)
    assert not any(line.startswith("   command:") for line in lines)
    assert lines[-1] == "  (its command, processes and log: for root and the control group)"


def test_a_transaction_names_what_it_touched_and_whether_it_worked() -> None:
    touched = [record("db"), record("migrate", "done"), record("web")]
    assert cli_show.transaction("restart", ["db"], touched) == (
        "restarted db and 2 services that require it: all up or done", True)
    assert cli_show.transaction("start", ["web"], [record("web"), record("db")]) == (
        "started web and 1 service it requires: all up", True)
    assert cli_show.transaction("stop", ["db"], [record("db", "down"), record("web", "down")]) \
        == ("stopped db and 1 service that requires it: all down", True)
    assert cli_show.transaction("start", ["db"], [record("db")]) == ("started db: up", True)
    summary, done = cli_show.transaction("start", ["web"], [
        record("web", "down", reason="requirement db failed"),
        record("db", "failed", reason="exited 4")])
    assert not done
    assert summary == ("start web: not done: web down (requirement db failed), "
                       "db failed (exited 4)")
    assert cli_show.transaction("stop", ["db"], [record("db", "stopping")])[1] is False


def test_duration() -> None:
    assert [cli_show.duration(s) for s in (None, 4.25, 35, 192, 7500, 300000)] == [
        "-", "4.2s", "35s", "3m12s", "2h5m", "3d11h"]


def test_reload_in_words() -> None:
    assert protocol.describe_reload({"added": [], "removed": [], "changed": []}) == \
        "nothing changed"
    assert protocol.describe_reload({"added": ["api", "db"], "removed": [], "changed": ["web"]}
                                    ) == "added: api, db; changed: web"


@pytest.mark.parametrize("command", sorted(cli_parser.HELP))
def test_each_subcommand_has_a_description_and_an_example(
        command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main([command, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert cli_parser.HELP[command][1].splitlines()[0] in out
    assert f"example:\n  {cli_parser.HELP[command][2].splitlines()[0]}" in out


def test_help_shows_the_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["restart", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "(default: 90)" in out
    with pytest.raises(SystemExit):
        cli.main(["status", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    # The non-root default, and the fall-back to the system's socket.
    assert "/tmp/roost-UID/control, then the system's /run/roost/control" in out


@pytest.mark.parametrize("args", [["status", "--bogus"], ["start"], ["log", "web", "-n", "x"],
                                  ["frobnicate"]])
def test_bad_usage_is_one_line_and_a_hint(args: list[str],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(args)
    assert exit_.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert len(captured.err.splitlines()) == 1, captured.err
    assert "--help`" in captured.err


@pytest.mark.parametrize(("args", "hint"), [
    (["web", "HUP"], "the signal comes first: roost signal HUP web"),
    (["web", "db", "SIGUSR1"], "the signal comes first: roost signal SIGUSR1 web db"),
    (["web", "db"], "no such signal: web"),
])
def test_a_signal_in_the_wrong_place_is_named_before_roost_is_asked(
        args: list[str], hint: str, capsys: pytest.CaptureFixture[str]) -> None:
    # Nothing listens on this address: the answer must come before any connection.
    assert cli.main(["signal", *args, "--control", "@roost-test-nobody-listens"]) == 2
    captured = capsys.readouterr()
    assert captured.err == f"roost signal: {hint} (see `roost signal --help`)\n"


def test_client_addresses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ROOST_CONTROL", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1000")
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    assert protocol.client_addresses() == ["/run/user/1000/roost/control", "/run/roost/control"]
    monkeypatch.setattr("os.geteuid", lambda: 0)
    assert protocol.client_addresses() == ["/run/roost/control"]
    # Told where, by the environment, a client looks nowhere else.
    monkeypatch.setenv("ROOST_CONTROL", "@mine")
    assert protocol.client_addresses() == ["@mine"]
