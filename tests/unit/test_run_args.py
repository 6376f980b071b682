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


@pytest.mark.parametrize("opt", ["--grace", "--signal-map", "--remap-exit", "-c", "--after"])
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


def test_main_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run.main(["--grace", "x", "--", "true"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("roost run: --grace: not a number of seconds")
    assert "usage: roost run" in err


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
