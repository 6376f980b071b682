"""The control protocol's framing: one JSON object per line, versioned, every fault named."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from roost.control import protocol
from roost.control.protocol import ProtocolError

# What a request's id may be: a string, a finite number, or null.
ids = st.none() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


def decode(message: bytes) -> dict[str, object]:
    assert message.endswith(b"\n")
    value = json.loads(message)
    assert isinstance(value, dict)
    return value


def test_request_round_trip() -> None:
    line = protocol.request("status", {"services": ["web"]}, ident=7)
    assert line.count(b"\n") == 1 and line.endswith(b"\n")
    assert decode(line) == {"v": 1, "id": 7, "cmd": "status", "args": {"services": ["web"]}}
    assert protocol.decode_request(line) == (7, "status", {"services": ["web"]})


def test_request_without_args() -> None:
    assert protocol.decode_request(protocol.request("ping")) == (1, "ping", {})
    # "args" and "id" may be left out.
    assert protocol.decode_request(b'{"v":1,"cmd":"ping"}') == (None, "ping", {})


def test_replies() -> None:
    assert decode(protocol.ok(3, {"a": 1})) == {"v": 1, "id": 3, "ok": True, "result": {"a": 1}}
    assert decode(protocol.error("x", protocol.NO_SUCH_SERVICE, "no such service: a")) == {
        "v": 1, "id": "x", "ok": False,
        "error": {"code": "no-such-service", "message": "no such service: a"}}
    assert decode(protocol.event(4, {"line": "hi"})) == {"v": 1, "id": 4, "event": {"line": "hi"}}


@given(ids, st.text(), json_values)
def test_any_payload_is_one_line(ident: object, cmd: str, payload: object) -> None:
    # Framing holds whatever the payload: newlines inside strings are escaped.
    for line in (protocol.request(cmd, {"x": payload}, ident), protocol.ok(ident, payload),
                 protocol.error(ident, protocol.FAILED, str(payload)),
                 protocol.event(ident, {"p": payload})):
        assert line.endswith(b"\n") and line.count(b"\n") == 1
        json.loads(line)
    assert protocol.decode_request(protocol.request(cmd, {"x": payload}, ident)) == (
        ident, cmd, {"x": payload})


@pytest.mark.parametrize(("line", "code", "text"), [
    (b"not json", protocol.BAD_REQUEST, "not JSON"),
    (b"", protocol.BAD_REQUEST, "not JSON"),
    (b"\xff\xfe{}", protocol.BAD_REQUEST, "not JSON"),
    (b'{"v":1,"cmd":"ping"', protocol.BAD_REQUEST, "not JSON"),
    (b"[1, 2]", protocol.BAD_REQUEST, "JSON object"),
    (b'"ping"', protocol.BAD_REQUEST, "JSON object"),
    (b'{"cmd":"ping"}', protocol.UNSUPPORTED_VERSION, "version None"),
    (b'{"v":2,"cmd":"ping"}', protocol.UNSUPPORTED_VERSION, "version 2"),
    (b'{"v":"1","cmd":"ping"}', protocol.UNSUPPORTED_VERSION, "version '1'"),
    (b'{"v":1}', protocol.BAD_REQUEST, "cmd"),
    (b'{"v":1,"cmd":5}', protocol.BAD_REQUEST, "cmd"),
    (b'{"v":1,"cmd":"ping","args":[]}', protocol.BAD_REQUEST, "args"),
    (b'{"v":1,"cmd":"ping","args":"x"}', protocol.BAD_REQUEST, "args"),
    # Nesting deep enough to exhaust the parser's recursion is malformed too.
    (b"[" * 60000, protocol.BAD_REQUEST, "not JSON"),
    (b'{"v":1,"cmd":"ping","args":{"a":' + b"[" * 60000 + b"]" * 60000 + b"}}",
     protocol.BAD_REQUEST, "not JSON"),
])
def test_malformed_requests(line: bytes, code: str, text: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        protocol.decode_request(line)
    assert caught.value.code == code
    assert text in caught.value.message


def test_an_error_about_a_readable_request_carries_its_id() -> None:
    with pytest.raises(ProtocolError) as caught:
        protocol.decode_request(b'{"v":7,"id":"abc","cmd":"ping"}')
    assert caught.value.code == protocol.UNSUPPORTED_VERSION
    assert caught.value.ident == "abc"
    assert decode(protocol.error(caught.value.ident, caught.value.code, "x"))["id"] == "abc"


def test_version_one_is_the_only_version() -> None:
    assert protocol.VERSION == 1
    assert decode(protocol.request("ping"))["v"] == 1


@given(st.binary(max_size=200))
def test_decoder_only_raises_protocol_errors(data: bytes) -> None:
    try:
        _ident, cmd, args = protocol.decode_request(data)
    except ProtocolError as exc:
        assert exc.code in (protocol.BAD_REQUEST, protocol.UNSUPPORTED_VERSION)
        return
    assert isinstance(cmd, str) and isinstance(args, dict)


def test_only_ping_status_and_events_are_open_to_all() -> None:
    # log returns service output and tree command lines: both may carry secrets. events
    # streams what status shows.
    assert {"ping", "status", "events"} == protocol.OPEN_TO_ALL


@pytest.mark.parametrize("ident", [b"[]", b"{}", b"true", b"[1]", b'"\\ud800"', b'"a\\udfff"',
                                   b"[" * 900 + b"]" * 900, b"[" * 995 + b"]" * 995, b"NaN",
                                   b"Infinity"])
def test_a_malformed_id_is_refused_without_it(ident: bytes) -> None:
    with pytest.raises(ProtocolError) as caught:
        protocol.decode_request(b'{"v":1,"cmd":"ping","id":' + ident + b"}")
    assert caught.value.code == protocol.BAD_REQUEST
    assert caught.value.ident is None
    assert "id" in caught.value.message or "nested too deeply" in caught.value.message


@pytest.mark.parametrize("args", [b'{"services":["\\ud800"]}', b'{"x":"\\udc80"}'])
def test_what_no_reply_could_echo_is_refused(args: bytes) -> None:
    with pytest.raises(ProtocolError) as caught:
        protocol.decode_request(b'{"v":1,"id":4,"cmd":"status","args":' + args + b"}")
    assert (caught.value.code, caught.value.ident) == (protocol.BAD_REQUEST, 4)


def test_a_lone_surrogate_in_a_reply_is_escaped_not_fatal() -> None:
    line = protocol.error(None, protocol.NO_SUCH_SERVICE, "no such service: \ud800")
    assert line.isascii() and decode(line)["error"]["message"].endswith("\ud800")  # type: ignore[index]
    # Without a surrogate, text stays UTF-8 rather than escaped.
    assert protocol.ok(1, "caf\u00e9") == '{"v":1,"id":1,"ok":true,"result":"caf\u00e9"}\n'.encode()


def test_a_reply_over_the_limit_becomes_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(protocol, "MAX_REPLY", 1000)
    reply = decode(protocol.ok(9, "x" * 2000))
    assert (reply["id"], reply["ok"]) == (9, False)
    assert reply["error"]["code"] == protocol.TOO_LARGE  # type: ignore[index]
    assert "over the" in reply["error"]["message"]  # type: ignore[index]
    assert decode(protocol.ok(9, "x" * 10))["ok"] is True


@given(st.dictionaries(st.sampled_from(["v", "id", "cmd", "args", "x"]),
                       json_values | st.just(1) | st.just("ping"), max_size=5))
def test_every_decoded_request_can_be_answered(message: dict[str, object]) -> None:
    # Whatever the decoder makes of an object, a reply naming its id can be encoded.
    line = json.dumps(message).encode()
    try:
        ident, _cmd, _args = protocol.decode_request(line)
    except ProtocolError as exc:
        ident = exc.ident
    reply = protocol.error(ident, protocol.FAILED, "x")
    assert reply.count(b"\n") == 1 and json.loads(reply)["id"] == ident


def test_socket_address() -> None:
    assert protocol.socket_address("@roost/control") == "\0roost/control"
    assert protocol.socket_address("/run/roost/control") == "/run/roost/control"


def test_default_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROOST_CONTROL", "@elsewhere")
    assert protocol.default_address() == "@elsewhere"
    monkeypatch.delenv("ROOST_CONTROL")
    monkeypatch.setattr("os.geteuid", lambda: 0)
    assert protocol.default_address() == "/run/roost/control"
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1000")
    assert protocol.default_address() == "/run/user/1000/roost/control"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert protocol.default_address() == "/tmp/roost-1000/control"


def test_check_directory(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: directories owned by another user are made with chown")
    good = tmp_path / "good"
    good.mkdir(mode=0o700)
    protocol.check_directory(str(good), private=True)
    protocol.check_directory(str(tmp_path), private=False)
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    sticky.chmod(0o1777)
    protocol.check_directory(str(sticky), private=False)  # as /tmp: others cannot replace
    link = tmp_path / "link"
    link.symlink_to(good)
    planted = tmp_path / "planted"
    planted.mkdir(mode=0o700)
    os.chown(planted, 65534, 65534)
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o755)
    for path, private, text in [(link, True, "symbolic link"), (link, False, "symbolic link"),
                                (planted, True, "owned by uid 65534"),
                                (planted, False, "owned by uid 65534"),
                                (open_dir, False, "other users could replace"),
                                (open_dir, True, "open to other users"),
                                (shared, True, "open to other users"),
                                (tmp_path / "missing", True, "cannot use")]:
        with pytest.raises(protocol.UnsafeAddress, match=text):
            protocol.check_directory(str(path), private)
