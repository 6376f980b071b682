"""Signal names and numbers: every signal round-trips, aliases and real-time names parse."""

from __future__ import annotations

import _signal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from roost.core import sigs

ALL = sorted(sigs.ALL)


def test_common_names() -> None:
    assert sigs.name(_signal.SIGTERM) == "SIGTERM"
    assert sigs.name(_signal.SIGKILL) == "SIGKILL"
    assert sigs.name(_signal.SIGHUP) == "SIGHUP"
    assert sigs.name(_signal.SIGSEGV) == "SIGSEGV"
    # The canonical name wins over an alias of the same number.
    assert sigs.name(_signal.SIGABRT) == "SIGABRT"
    assert sigs.name(_signal.SIGCHLD) == "SIGCHLD"
    assert sigs.name(_signal.SIGIO) == "SIGIO"


def test_realtime_names() -> None:
    assert sigs.name(sigs.RTMIN) == "SIGRTMIN"
    assert sigs.name(sigs.RTMIN + 3) == "SIGRTMIN+3"
    assert sigs.name(sigs.RTMAX) == "SIGRTMAX"
    assert sigs.name(sigs.RTMAX - 2) == "SIGRTMAX-2"
    assert sigs.number("RTMIN+3") == sigs.RTMIN + 3
    assert sigs.number("SIGRTMAX-2") == sigs.RTMAX - 2
    assert sigs.number("rtmin") == sigs.RTMIN
    assert sigs.number("RTMAX") == sigs.RTMAX


def test_unknown_number_has_a_name() -> None:
    assert sigs.name(200) == "signal 200"
    assert sigs.name(0) == "signal 0"


@pytest.mark.parametrize("spec", ["TERM", "SIGTERM", "term", "sigterm", " TERM ", "15"])
def test_number_accepts_spellings(spec: str) -> None:
    assert sigs.number(spec) == _signal.SIGTERM


def test_aliases() -> None:
    assert sigs.number("IOT") == _signal.SIGABRT
    assert sigs.number("SIGCLD") == _signal.SIGCHLD
    assert sigs.number("POLL") == _signal.SIGIO


def test_zero_is_a_number() -> None:
    # Signal 0 probes for a process's existence; it is a valid number to parse.
    assert sigs.number("0") == 0


@pytest.mark.parametrize("spec", [
    "", "SIG", "FOO", "SIGFOO", "99", "65", "-1", "TERM9", "RTMIN-1", "RTMAX+1", "RTMIN+",
    "RTMIN+x", "SIGRTMINX", f"RTMIN+{sigs.RTMAX - sigs.RTMIN + 1}", "1.5",
])
def test_number_rejects(spec: str) -> None:
    with pytest.raises(ValueError, match="signal"):
        sigs.number(spec)


@pytest.mark.parametrize("signum", ALL)
def test_every_signal_round_trips(signum: int) -> None:
    text = sigs.name(signum)
    assert not text.startswith("signal "), f"{signum} has no name"
    assert sigs.number(text) == signum
    assert sigs.number(text.removeprefix("SIG").lower()) == signum
    assert sigs.number(str(signum)) == signum


def test_names_are_unique() -> None:
    names = [sigs.name(n) for n in ALL]
    assert len(set(names)) == len(names)


@given(st.sampled_from(ALL), st.booleans(), st.booleans())
def test_round_trip_any_spelling(signum: int, strip: bool, lower: bool) -> None:
    text = sigs.name(signum)
    if strip:
        text = text.removeprefix("SIG")
    if lower:
        text = text.lower()
    assert sigs.number(text) == signum


@given(st.text(max_size=12))
def test_number_never_fails_otherwise(text: str) -> None:
    # Any text either names a signal or is refused with ValueError, nothing else.
    try:
        value = sigs.number(text)
    except ValueError:
        return
    assert value == 0 or value in sigs.ALL


def test_classes() -> None:
    assert {_signal.SIGKILL, _signal.SIGSTOP} == sigs.UNCATCHABLE
    assert _signal.SIGSEGV in sigs.SYNCHRONOUS
    assert _signal.SIGTERM in sigs.CATCHABLE
    assert not sigs.CATCHABLE & (sigs.UNCATCHABLE | sigs.SYNCHRONOUS)
