"""`roost run` command line: every option, its errors, and where the command starts."""

from __future__ import annotations

import _signal

import pytest

from roost.container import options, run
from roost.container.options import UsageError, parse


def test_defaults() -> None:
    opts = parse(["--", "app", "-v"])
    assert opts.command == ["app", "-v"]
    assert not opts.verbose
    assert not opts.group
    assert opts.grace == 5.0
    assert opts.signal_map == {}
    assert opts.remap == {}
    assert opts.config is None
    assert opts.after == []
    assert opts.control is None
    assert opts.user is None
    assert not opts.no_new_privs
    assert opts.pre_stop_delay == 0.0
    assert opts.restart is None
    assert opts.restart_delay is None
    assert opts.restart_limit is None
    assert opts.ready_fd is None
    assert opts.ready_file is None


def test_command_without_double_dash_keeps_its_own_options() -> None:
    opts = parse(["-v", "app", "--grace", "1", "-g"])
    assert opts.verbose
    assert opts.command == ["app", "--grace", "1", "-g"]
    assert opts.grace == 5.0
    assert not opts.group


def test_lone_dash_is_a_command() -> None:
    assert parse(["-"]).command == ["-"]


def test_flags_long_short_and_bundled() -> None:
    for args in (["-v", "-g"], ["--verbose", "--group"], ["-vg"], ["-gv"]):
        opts = parse([*args, "--", "app"])
        assert opts.verbose and opts.group, args


def test_flag_with_value_is_an_error() -> None:
    with pytest.raises(UsageError, match="takes no value"):
        parse(["--verbose=1", "--", "app"])


def test_values_separate_and_inline() -> None:
    opts = parse(["--grace", "2.5", "--", "x"])
    assert opts.grace == 2.5
    opts = parse(["--grace=0", "--", "x"])
    assert opts.grace == 0.0


@pytest.mark.parametrize("bad", ["-1", "nan", "inf", "-inf", "1e7", "soon", ""])
def test_bad_grace(bad: str) -> None:
    with pytest.raises(UsageError, match="--grace"):
        parse(["--grace", bad, "--", "x"])


def test_grace_upper_bound_is_accepted() -> None:
    assert parse([f"--grace={options.MAX_GRACE}", "--", "x"]).grace == options.MAX_GRACE


def test_signal_map_names_numbers_and_drop() -> None:
    opts = parse(["--signal-map", "TERM:QUIT,usr1:0,SIGHUP:10,RTMIN+2:RTMIN+3", "--", "x"])
    assert opts.signal_map == {
        _signal.SIGTERM: _signal.SIGQUIT,
        _signal.SIGUSR1: 0,
        _signal.SIGHUP: _signal.SIGUSR1,
        _signal.SIGRTMIN + 2: _signal.SIGRTMIN + 3,
    }


def test_signal_map_repeats_accumulate() -> None:
    opts = parse(["--signal-map", "TERM:QUIT", "--signal-map=INT:TERM", "--", "x"])
    assert opts.signal_map == {_signal.SIGTERM: _signal.SIGQUIT, _signal.SIGINT: _signal.SIGTERM}


def test_signal_map_may_target_kill() -> None:
    assert parse(["--signal-map", "TERM:KILL", "--", "x"]).signal_map == {
        _signal.SIGTERM: _signal.SIGKILL}


@pytest.mark.parametrize("bad", ["TERM", "TERM:BOGUS", "NOPE:TERM", "TERM:99", "TERM:QUIT,"])
def test_bad_signal_map(bad: str) -> None:
    with pytest.raises(UsageError, match=r"--signal-map|FROM:TO"):
        parse(["--signal-map", bad, "--", "x"])


@pytest.mark.parametrize("source", ["CHLD", "KILL", "STOP", "SEGV", "TTOU", "PIPE", "0"])
def test_signal_map_refuses_signals_never_forwarded(source: str) -> None:
    with pytest.raises(UsageError, match="never forwarded"):
        parse(["--signal-map", f"{source}:TERM", "--", "x"])


def test_remap_exit() -> None:
    opts = parse(["--remap-exit", "143:0,1:0", "--remap-exit=2:255", "--", "x"])
    assert opts.remap == {143: 0, 1: 0, 2: 255}


@pytest.mark.parametrize("bad", ["143", "256:0", "1:-1", "a:b", "1:2:3", "+1:0", "\u00b2:0",
                                 "\u0663:0", ":", "1:"])
def test_bad_remap_exit(bad: str) -> None:
    with pytest.raises(UsageError):
        parse(["--remap-exit", bad, "--", "x"])


def test_sidecar_options() -> None:
    opts = parse(["-c", "/etc/side", "--after", "db", "--after=cache", "--control", "@ctl",
                  "--", "x"])
    assert opts.config == "/etc/side"
    assert opts.after == ["db", "cache"]
    assert opts.control == "@ctl"


def test_after_needs_config() -> None:
    with pytest.raises(UsageError, match="--after needs -c"):
        parse(["--after", "db", "--", "x"])


@pytest.mark.parametrize("args", [[], ["--"], ["-v"], ["-v", "--"]])
def test_no_command(args: list[str]) -> None:
    with pytest.raises(UsageError, match="no command"):
        parse(args)


@pytest.mark.parametrize("opt", ["--grace", "--signal-map", "--remap-exit", "-c", "--after",
                                 "--user", "--pre-stop-delay", "--restart", "--restart-delay",
                                 "--restart-limit"])
def test_missing_value(opt: str) -> None:
    with pytest.raises(UsageError, match="needs a value"):
        parse([opt])


def test_unknown_option() -> None:
    with pytest.raises(UsageError, match="unknown option --frobnicate"):
        parse(["--frobnicate", "--", "x"])


def test_help_is_an_empty_usage_error() -> None:
    with pytest.raises(UsageError) as info:
        parse(["-h"])
    assert str(info.value) == ""


def test_parse_does_not_modify_its_argument() -> None:
    args = ["-vg", "--", "x"]
    parse(args)
    assert args == ["-vg", "--", "x"]


def test_main_usage_errors_exit_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert run.main(["--grace", "x", "--", "true"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("roost run: --grace: not a number of seconds")
    assert err.count("\n") == 1, err
    assert "--help" in err


def test_account_options() -> None:
    opts = parse(["--user", "nobody:nogroup", "--no-new-privileges", "--", "x"])
    assert opts.user == "nobody:nogroup"
    assert opts.no_new_privs
    assert parse(["--user=1000", "--", "x"]).user == "1000"


@pytest.mark.parametrize("bad", ["", ":", ":grp", "user:"])
def test_bad_user(bad: str) -> None:
    with pytest.raises(UsageError, match="--user"):
        parse(["--user", bad, "--", "x"])


def test_no_new_privileges_takes_no_value() -> None:
    with pytest.raises(UsageError, match="takes no value"):
        parse(["--no-new-privileges=1", "--", "x"])


def test_pre_stop_delay() -> None:
    assert parse(["--pre-stop-delay", "2.5", "--", "x"]).pre_stop_delay == 2.5
    for bad in ("-1", "nan", "later"):
        with pytest.raises(UsageError, match="--pre-stop-delay"):
            parse(["--pre-stop-delay", bad, "--", "x"])


def test_restart_defaults_and_values() -> None:
    opts = parse(["--restart", "on-failure", "--", "x"])
    assert (opts.restart, opts.restart_delay, opts.restart_max_delay, opts.restart_limit) == (
        "on-failure", options.DEFAULT_RESTART_DELAY, options.DEFAULT_RESTART_MAX_DELAY, None)
    opts = parse(["--restart=always", "--restart-delay", "0.5", "--restart-max-delay=4",
                  "--restart-limit", "3", "--", "x"])
    assert (opts.restart, opts.restart_delay, opts.restart_max_delay, opts.restart_limit) == (
        "always", 0.5, 4.0, 3)
    # A first delay above the default maximum is the maximum.
    assert parse(["--restart", "always", "--restart-delay", "90", "--", "x"]).restart_max_delay \
        == 90.0


@pytest.mark.parametrize(("args", "match"), [
    (["--restart", "never"], "--restart: expected on-failure or always"),
    (["--restart", "always", "--restart-delay", "-1"], "--restart-delay: must be from 0"),
    (["--restart", "always", "--restart-delay", "inf"], "--restart-delay"),
    (["--restart", "always", "--restart-limit", "-1"], "--restart-limit: not a count"),
    (["--restart", "always", "--restart-limit", "1.5"], "--restart-limit: not a count"),
    (["--restart-limit", "3"], "--restart-limit needs --restart"),
    (["--restart-delay", "1"], "--restart-delay needs --restart"),
    (["--restart-max-delay", "1"], "--restart-max-delay needs --restart"),
    (["--restart", "always", "--restart-delay", "5", "--restart-max-delay", "1"],
     "is below --restart-delay"),
])
def test_bad_restart(args: list[str], match: str) -> None:
    with pytest.raises(UsageError, match=match):
        parse([*args, "--", "x"])


@pytest.mark.parametrize("args", [["--restart-limit", "3"], ["--restart", "always",
                                                              "--restart-delay", "-1"]])
def test_main_bad_restart_is_one_line(capsys: pytest.CaptureFixture[str],
                                      args: list[str]) -> None:
    assert run.main([*args, "--", "true"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("roost run: --restart") and err.count("\n") == 1, err


def test_main_unknown_user_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert run.main(["--user", "roost-no-such-user", "--", "true"]) == 2
    assert capsys.readouterr().err.startswith(
        "roost run: --user: no such user: roost-no-such-user")
    assert run.main(["--user", "nobody:roost-no-such-group", "--", "true"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("roost run: --user: no such group: roost-no-such-group")
    assert err.count("\n") == 1


def test_main_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert run.main(["--help"]) == 0
    assert capsys.readouterr().out.startswith("usage: roost run")


def test_forwarded_set() -> None:
    for signum in (_signal.SIGCHLD, _signal.SIGTTIN, _signal.SIGTTOU, _signal.SIGPIPE,
                   _signal.SIGKILL, _signal.SIGSTOP, _signal.SIGSEGV, _signal.SIGBUS,
                   _signal.SIGFPE, _signal.SIGILL, _signal.SIGTRAP, _signal.SIGSYS,
                   _signal.SIGABRT):
        assert signum not in options.FORWARDED
    for signum in (_signal.SIGTERM, _signal.SIGINT, _signal.SIGQUIT, _signal.SIGHUP,
                   _signal.SIGUSR1, _signal.SIGUSR2, _signal.SIGWINCH, _signal.SIGCONT,
                   _signal.SIGTSTP, _signal.SIGALRM, _signal.SIGURG, _signal.SIGRTMIN,
                   _signal.SIGRTMAX):
        assert signum in options.FORWARDED


def test_ready_options_take_a_value() -> None:
    opts = parse(["--ready-fd", "5", "--ready-file=/run/ready", "--", "app"])
    assert (opts.ready_fd, opts.ready_file) == ("5", "/run/ready")
    with pytest.raises(UsageError, match="--ready-file needs a value"):
        parse(["--ready-file"])
