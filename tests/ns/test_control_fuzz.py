"""The live control server under random input: random bytes, random JSON, and requests
pipelined on one connection. Each request line gets exactly one reply line, and roost
writes no traceback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.ns.supervisor_kit import ConfigDir, Roost, running

pytestmark = pytest.mark.timeout(300)

scalars = (st.none() | st.booleans() | st.integers() | st.floats() | st.text()
           | st.sampled_from(["\ud800", "\udfff", "svc", "idle"]))
values = st.recursive(scalars, lambda c: st.lists(c, max_size=3)
                      | st.dictionaries(st.text(max_size=6), c, max_size=3), max_leaves=12)
# Commands that change nothing, even for root, and an unknown one; `follow` is never
# true (a follower gets events after its one reply).
commands = st.sampled_from(["ping", "status", "log", "tree", "frobnicate"]) | st.text(max_size=8)
arguments = st.dictionaries(
    st.sampled_from(["services", "lines", "follow", "wait", "timeout", "signal", "x"]),
    values.filter(lambda v: v is not True), max_size=4)
requests = st.fixed_dictionaries({"cmd": commands}, optional={
    "v": st.just(1) | scalars, "id": values, "args": arguments | values})


def as_line(message: object) -> bytes:
    return json.dumps(message).encode()


lines = st.one_of(
    st.binary(max_size=80).map(lambda b: b.replace(b"\n", b"")),
    values.map(as_line),
    requests.map(as_line),
    st.just(b"[" * 990 + b"]" * 990),
    st.just(b'{"v":1,"cmd":"ping","id":' + b"[" * 995 + b"]" * 995 + b"}"),
)


@pytest.fixture(scope="module")
def roost(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Roost]:
    workdir = tmp_path_factory.mktemp("fuzz")
    config = ConfigDir(workdir / "conf")
    config.service("svc", command=["sleep", "600"])
    config.service("idle", command=["sleep", "600"], autostart=False)
    with running(config, "subreaper", workdir) as r:
        r.wait_state("svc", "up")
        yield r
        assert "Traceback" not in r.output(), r.output()[-3000:]
        assert r.alive()


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow,
          HealthCheck.function_scoped_fixture, HealthCheck.data_too_large])
@given(st.lists(lines, min_size=1, max_size=8))
def test_each_request_line_gets_exactly_one_reply(roost: Roost, batch: list[bytes]) -> None:
    expected = sum(1 for line in batch if line.strip())
    sentinel = b'{"v":1,"id":"sentinel","cmd":"ping"}'
    with roost.raw() as conn:
        conn.send(b"\n".join([*batch, sentinel]) + b"\n")
        replies = []
        while True:
            reply = conn.reply()
            assert reply.get("v") == 1, reply
            assert reply.get("ok") is True or isinstance(reply.get("error"), dict), reply
            if reply.get("id") == "sentinel" and reply.get("ok") is True:
                break
            replies.append(reply)
    assert len(replies) == expected, (batch, replies)


def test_roost_is_unharmed(roost: Roost, tmp_path: Path) -> None:
    assert roost.status("svc")["state"] == "up"
    assert "Traceback" not in roost.output()
