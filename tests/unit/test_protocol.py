"""The control protocol's framing: one JSON object per line, versioned, every fault named."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from roost.control import protocol
from roost.control.protocol import ProtocolError

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


@given(json_values, st.text(), json_values)
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


def test_read_only_commands() -> None:
    assert {"ping", "status", "log", "tree"} == protocol.READ_ONLY


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
