"""The control socket against a real roost: status, authorization by credentials, and every
kind of bad request answered with an error while roost goes on serving."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from roost.control.client import RemoteError
from tests.ns.supervisor_kit import MODES, ConfigDir, Roost, running
from tests.support import require_unshare, wait_for

# Each test is bounded well below the suite's timeout: a hang fails fast.
pytestmark = pytest.mark.timeout(120)

NOBODY = 65534
DAEMON_GID = 1  # the control group configured below

SIGNALLED = """
import signal, sys, time
signal.signal(signal.SIGUSR1, lambda *_: print("got SIGUSR1", flush=True))
print("listening", flush=True)
while True:
    time.sleep(60)
"""


@pytest.fixture(scope="module", params=MODES)
def roost(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[Roost]:
    if request.param == "pid1":
        require_unshare()
    workdir = tmp_path_factory.mktemp(f"control-{request.param}")
    config = ConfigDir(workdir / "conf")
    config.settings(control_group="daemon")
    config.service("svc", command=["sleep", "600"])
    config.service("echo", command=config.python("echo", SIGNALLED))
    config.service("idle", command=["sleep", "600"], autostart=False)
    with running(config, request.param, workdir) as roost:
        roost.wait_state("svc", "up")
        roost.wait_state("echo", "up")
        roost.wait_output(r"echo \| listening")
        yield roost


def test_status_json_has_every_field(roost: Roost) -> None:
    result = roost.cli("status", "--json")
    assert result.returncode == 0, result.stderr
    records = {r["name"]: r for r in json.loads(result.stdout)}
    assert sorted(records) == ["echo", "idle", "svc"]
    svc = records["svc"]
    for key in ("name", "state", "pid", "restarts", "last_exit", "reason", "uptime", "type"):
        assert key in svc, key
    assert (svc["state"], svc["restarts"], svc["last_exit"]) == ("up", 0, None)
    assert isinstance(svc["pid"], int) and svc["pid"] > 1
    idle = records["idle"]
    assert (idle["state"], idle["pid"], idle["last_exit"]) == ("down", None, None)


def test_status_table(roost: Roost) -> None:
    result = roost.cli("status")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["NAME", "STATE", "PID", "UPTIME", "RESTARTS", "STATUS",
                                "REASON"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows["svc"][:2] == ["svc", "up"]
    assert rows["idle"][:3] == ["idle", "down", "-"]


def test_unknown_service(roost: Roost) -> None:
    result = roost.cli("status", "nope")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == "roost: no such service: nope\n"


def test_nobody_can_read_but_not_change(roost: Roost) -> None:
    pid = roost.status("svc")["pid"]
    result = roost.cli("status", "--json", user=NOBODY)
    assert result.returncode == 0, result.stderr
    assert {r["name"] for r in json.loads(result.stdout)} == {"svc", "echo", "idle"}
    # Service output and command lines carry secrets: not for every local user.
    for args in (["log", "echo"], ["tree"], ["stop", "svc"], ["start", "idle"],
                 ["restart", "svc"], ["signal", "KILL", "svc"], ["reload"], ["shutdown"]):
        result = roost.cli(*args, user=NOBODY)
        assert result.returncode == 1, args
        assert result.stderr == (f"roost: {args[0]}: permitted to root and the control group "
                                 f"only (you are uid {NOBODY})\n"), result.stderr
    assert roost.status("svc")["pid"] == pid
    assert roost.status("svc")["state"] == "up"
    assert roost.status("idle")["state"] == "down"
    assert roost.alive()


def test_a_member_of_the_control_group_may_change(roost: Roost) -> None:
    pid = roost.status("svc")["pid"]
    result = roost.cli("restart", "svc", user=NOBODY, groups=str(DAEMON_GID))
    assert result.returncode == 0, result.stderr
    # Who asked, on roost's console: the uid, its name, and its pid where roost sees one.
    roost.wait_output(rf"restart svc by uid {NOBODY} \(nobody, "
                      r"(pid \d+|a process outside this PID namespace)\)$")
    result = roost.cli("log", "echo", user=NOBODY, groups=str(DAEMON_GID))
    assert result.returncode == 0 and "listening" in result.stdout, result.stderr
    record = roost.status("svc")
    assert record["state"] == "up" and record["pid"] != pid


def test_signal(roost: Roost) -> None:
    result = roost.cli("signal", "USR1", "echo")
    assert result.returncode == 0, result.stderr
    roost.wait_output(r"echo \| got SIGUSR1")
    result = roost.cli("signal", "USR1", "idle")
    assert result.returncode == 1
    assert result.stderr == "roost: not running: idle\n"
    # The client knows the signal names: bad usage, before roost is asked...
    result = roost.cli("signal", "NOPE", "echo")
    assert (result.returncode, result.stderr) == (
        2, "roost signal: no such signal: NOPE (see `roost signal --help`)\n")
    # ...and roost refuses it from a client that does not.
    with pytest.raises(RemoteError, match="no such signal: NOPE"):
        roost.call("signal", services=["echo"], signal="NOPE")


def error_of(reply: dict[str, object]) -> tuple[object, object]:
    assert reply["v"] == 1 and reply["ok"] is False, reply
    error = reply["error"]
    assert isinstance(error, dict)
    return reply["id"], error["code"]


def test_bad_requests_get_an_error_and_roost_goes_on(roost: Roost) -> None:
    with roost.raw() as conn:
        conn.send(b"garbage\n")
        assert error_of(conn.reply()) == (None, "bad-request")
        # A readable request that is refused still gets its id back.
        conn.send(b'{"v":2,"id":5,"cmd":"ping"}\n')
        assert error_of(conn.reply()) == (5, "unsupported-version")
        conn.send(b'{"id":5,"cmd":"ping"}\n')
        assert error_of(conn.reply()) == (5, "unsupported-version")
        conn.send(b'{"v":1,"id":6,"cmd":"frobnicate"}\n')
        reply = conn.reply()
        assert error_of(reply) == (6, "unknown-command")
        assert "frobnicate" in reply["error"]["message"]  # type: ignore[index]
        conn.send(b'{"v":1,"id":7,"cmd":"status","args":{"services":["nope"]}}\n')
        assert error_of(conn.reply()) == (7, "no-such-service")
        conn.send(b'{"v":1,"id":8,"cmd":"status","args":{"services":"svc"}}\n')
        assert error_of(conn.reply()) == (8, "bad-request")
        conn.send(b'{"v":1,"id":9,"cmd":"status","args":[]}\n')
        assert error_of(conn.reply()) == (9, "bad-request")
        # Numbers the reactor could not wait for are refused, not obeyed.
        for timeout in (b"Infinity", b"1e300", b"-1", b'"10"'):
            conn.send(b'{"v":1,"id":10,"cmd":"start","args":{"services":["svc"],"timeout":'
                      + timeout + b"}}\n")
            assert error_of(conn.reply()) == (10, "bad-request"), timeout
        # Arguments of the wrong type are refused, naming the argument.
        for args, name in ((b'{"services":["idle"],"follow":"no"}', b"log"),
                           (b'{"services":["idle"],"lines":2.7}', b"log"),
                           (b'{"services":["svc"],"wait":"false"}', b"stop"),
                           (b'{"services":["svc"],"signal":0}', b"signal"),
                           (b'{"services":["svc"],"signal":"0"}', b"signal")):
            conn.send(b'{"v":1,"id":14,"cmd":"' + name + b'","args":' + args + b"}\n")
            reply = conn.reply()
            assert error_of(reply) == (14, "bad-request"), args
            key = args.split(b",")[1].split(b":")[0].strip(b'"').decode()
            assert f'"{key}"' in reply["error"]["message"] or "signal 0" in reply["error"][
                "message"], reply
        # What no reply could carry (a lone surrogate, an id nested deep) is refused,
        # and what follows it on the connection is still served.
        conn.send(b'{"v":1,"id":"\\ud800","cmd":"ping"}\n'
                  b'{"v":1,"id":' + b"[" * 990 + b"]" * 990 + b',"cmd":"ping"}\n'
                  b'{"v":1,"id":15,"cmd":"status","args":{"services":["\\ud800"]}}\n'
                  b'{"v":1,"id":16,"cmd":"ping"}\n')
        assert error_of(conn.reply()) == (None, "bad-request")
        assert error_of(conn.reply()) == (None, "bad-request")
        assert error_of(conn.reply()) == (15, "bad-request")
        assert conn.reply()["id"] == 16
        # Nested deep enough to exhaust a recursive parser.
        conn.send(b"[" * 50000 + b"\n")
        assert error_of(conn.reply()) == (None, "bad-request")
        # Too long, but complete: refused, and the connection still serves.
        conn.send(b'{"v":1,"id":11,"cmd":"ping","args":{"x":"' + b"a" * 70000 + b'"}}\n')
        assert error_of(conn.reply()) == (None, "too-large")
        # Several requests in one write are answered in order.
        conn.send(b'{"v":1,"id":12,"cmd":"ping"}\n\n{"v":1,"id":13,"cmd":"ping"}\n')
        first, second = conn.reply(), conn.reply()
        assert (first["id"], first["ok"], second["id"], second["ok"]) == (12, True, 13, True)
    with roost.raw() as conn:
        # Too long with no end in sight: refused, and the connection closed.
        conn.send(b"a" * 70000)
        assert error_of(conn.reply()) == (None, "too-large")
        assert conn.closed_by_peer()
    with roost.raw() as conn:
        conn.send(b'{"v":1,"id":"x","cmd":"ping"}\n')
        reply = conn.reply()
        assert reply["ok"] is True and reply["id"] == "x"
        result = reply["result"]
        assert isinstance(result, dict) and result["protocol"] == 1
        assert result["pid1"] is (roost.mode == "pid1")
    assert roost.status("svc")["state"] == "up"
    assert "Traceback" not in roost.output()


def test_a_client_that_goes_away_mid_request_does_no_harm(roost: Roost) -> None:
    for _ in range(20):
        with roost.raw() as conn:
            conn.send(b'{"v":1,"cmd":"sta')
    with roost.raw() as conn:
        conn.send(b'{"v":1,"id":1,"cmd":"status"}\n')
        assert conn.reply()["ok"] is True


def test_many_clients_at_once(roost: Roost) -> None:
    conns = [roost.raw() for _ in range(50)]
    try:
        for index, conn in enumerate(conns):
            conn.send(json.dumps({"v": 1, "id": index, "cmd": "status"}).encode() + b"\n")
        for index, conn in enumerate(conns):
            reply = conn.reply()
            assert reply["id"] == index and reply["ok"] is True
    finally:
        for conn in conns:
            conn.close()


def test_no_roost_running(tmp_path: Path) -> None:
    import subprocess

    from tests.support import ROOST

    for address in ("@roost-test-nobody-listens-here", str(tmp_path / "no-socket")):
        result = subprocess.run([*ROOST, "status", "--control", address], capture_output=True,
                                text=True, timeout=30)
        assert result.returncode == 1
        assert result.stdout == ""
        assert len(result.stderr.splitlines()) == 1, result.stderr
        assert result.stderr.startswith(f"roost: roost is not running (nothing listens on "
                                        f"{address}")


def test_a_second_roost_on_the_same_address_is_refused(roost: Roost, tmp_path: Path) -> None:
    import subprocess

    from tests.support import ROOST

    config = ConfigDir(tmp_path / "conf")
    config.service("other", command=["sleep", "600"])
    result = subprocess.run([*ROOST, "up", "-c", str(config.path), "--control", roost.control],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert f"cannot listen on {roost.control}: another roost already listens" in result.stderr
    wait_for(roost.alive, timeout=1)
