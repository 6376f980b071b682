"""The picture and the critical chain of `roost analyze`, from status records alone."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import pytest

from roost import cli_analyze

SVG = "{http://www.w3.org/2000/svg}"


def record(name: str, state: str, start: float | None, settle: float | None,
           after: list[str] | None = None, restarts: int = 0) -> dict[str, Any]:
    """A status record; `start` and `settle` are ages in seconds, as roost sends them."""
    return {"name": name, "state": state, "start_age": start, "settle_age": settle,
            "after": after or [], "restarts": restarts}


BOOT = [
    record("db", "up", 10.0, 8.5),
    record("migrate", "done", 8.5, 8.0, ["db"]),
    record("web", "up", 8.0, 7.9, ["db", "migrate"]),
    record("cache", "up", 9.9, 9.8),
    record("flaky", "up", 0.2, 0.1, restarts=4),
    record("spare", "down", None, None),
    record("slow", "starting", 9.0, None, ["cache"]),
]


def test_spans_are_timed_from_the_first_start() -> None:
    spans, end = cli_analyze.spans(BOOT)
    assert end == 10.0
    assert [s.name for s in spans] == ["db", "cache", "slow", "migrate", "web", "flaky"]
    web = next(s for s in spans if s.name == "web")
    assert (web.start, web.settled) == (2.0, pytest.approx(2.1))


def test_the_chain_follows_what_settled_last_before_each_start() -> None:
    assert cli_analyze.critical_chain(BOOT, "web") == [
        "web @2.100s +0.100s", "└─migrate @2.000s +0.500s", "  └─db @1.500s +1.500s"]


def test_the_default_chain_ends_the_boot_and_skips_a_restarted_service() -> None:
    assert cli_analyze.critical_chain(BOOT)[0].startswith("web ")


def test_a_service_still_starting_and_one_never_started() -> None:
    assert cli_analyze.critical_chain(BOOT, "slow") == ["slow @1.000s (not settled)",
                                                       "└─cache @0.200s +0.100s"]
    with pytest.raises(KeyError):
        cli_analyze.critical_chain(BOOT, "spare")
    assert cli_analyze.critical_chain([record("spare", "down", None, None)]) == []


def test_the_plot_is_svg_with_a_bar_per_started_service() -> None:
    svg = ET.fromstring(cli_analyze.plot(BOOT))
    starting = [r for r in svg.iter(f"{SVG}rect") if r.get("class") == "starting"]
    assert len(starting) == 6
    assert {r.get("class") for r in svg.iter(f"{SVG}rect")} >= {"up", "done", "starting"}
    assert len([line for line in svg.iter(f"{SVG}line") if line.get("class") == "after"]) == 4
    ticks = [t.text for t in svg.iter(f"{SVG}text") if (t.text or "").endswith("s")
             and not (t.text or "").startswith("+")]
    assert ticks[0] == "0s" and ticks[-1] == "10s"


def test_nothing_started_is_an_empty_picture() -> None:
    svg = ET.fromstring(cli_analyze.plot([record("spare", "down", None, None)]))
    assert not [r for r in svg.iter(f"{SVG}rect") if r.get("class") == "starting"]
