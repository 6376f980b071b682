"""System mode, the parts that need no namespace: command lines, the mount table, the guards.

The guard tests matter most: run here, as an ordinary process, every machine-wide call
must refuse before it reaches the kernel.
"""

from __future__ import annotations

import os
import signal

import pytest

from roost.kernel import linux
from roost.system import boot, mounts, power, poweroff

# -- request command lines -------------------------------------------------------------


@pytest.mark.parametrize("prog,args,kind", [
    ("poweroff", [], "poweroff"),
    ("reboot", [], "reboot"),
    ("halt", [], "halt"),
    ("halt", ["-p"], "poweroff"),
    ("reboot", ["--kexec"], "kexec"),
    ("shutdown", ["-h", "now"], "poweroff"),
    ("shutdown", ["-P", "now"], "poweroff"),
    ("shutdown", ["-r", "now"], "reboot"),
    ("shutdown", ["-H", "+0"], "halt"),
    ("shutdown", [], "poweroff"),
    ("shutdown", ["-r", "now", "going", "down"], "reboot"),
])
def test_request_kinds(prog: str, args: list[str], kind: str) -> None:
    assert poweroff.parse(prog, args).kind == kind


def test_request_options() -> None:
    opts = poweroff.parse("poweroff", ["-f", "--via-signal", "--timeout", "2.5", "--control",
                                       "@x", "-d", "-n", "-q"])
    assert (opts.force, opts.via_signal, opts.deadline, opts.control, opts.quiet) == (
        True, True, 2.5, "@x", True)
    assert poweroff.parse("reboot", ["--timeout=7"]).deadline == 7.0


@pytest.mark.parametrize("prog,args,message", [
    ("poweroff", ["--bogus"], "unknown option --bogus"),
    ("poweroff", ["extra"], "unexpected argument"),
    ("poweroff", ["--timeout"], "needs a value"),
    ("poweroff", ["--timeout", "x"], "not a number"),
    ("poweroff", ["--timeout", "0"], "more than 0"),
    ("shutdown", ["-r", "18:00"], "only `now`"),
    ("shutdown", ["-c"], "nothing to cancel"),
    ("poweroff", ["-p"], "unknown option -p"),
])
def test_request_usage_errors(prog: str, args: list[str], message: str) -> None:
    with pytest.raises(poweroff.UsageError, match=message):
        poweroff.parse(prog, args)


def test_signal_mapping_is_complete_and_consistent() -> None:
    rtmin = signal.SIGRTMIN
    assert {
        signal.SIGUSR1: "halt", signal.SIGUSR2: "poweroff", signal.SIGTERM: "reboot",
        signal.SIGPWR: "poweroff", rtmin + 3: "halt", rtmin + 4: "poweroff",
        rtmin + 5: "reboot", rtmin + 6: "kexec"} == power.SIGNAL_REQUESTS
    # What --via-signal sends is read back as the same request.
    for kind, signum in power.REQUEST_SIGNALS.items():
        assert power.SIGNAL_REQUESTS[signum] == kind
    assert power.CTRL_ALT_DEL == signal.SIGINT


def test_boot_command_line_is_lenient() -> None:
    opts = boot.parse(["-c", "/etc/x", "single", "-v", "auto"])
    assert opts.config == "/etc/x" and opts.verbose
    assert opts.ignored == ["single", "auto"]
    assert boot.parse(["--config=/y"]).config == "/y"


# -- the mount table ------------------------------------------------------------------

MOUNTINFO = """\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
40 27 7:0 / /outer rw,relatime - ext4 /dev/vda rw
41 27 0:30 / /mnt/with\\040space rw - tmpfs tmpfs rw
42 27 7:1 / /data ro,relatime - ext4 /dev/loop1 ro
"""


def test_parse_mountinfo() -> None:
    table = mounts.parse_mountinfo(MOUNTINFO)
    assert [m.target for m in table] == ["/proc", "/", "/outer", "/mnt/with space", "/data"]
    assert [m.ident for m in table] == [22, 27, 40, 41, 42]
    assert table[0].virtual and not table[1].virtual
    assert table[4].read_only and not table[1].read_only
    assert table[4].source == "/dev/loop1"


def test_parse_mountinfo_of_this_process() -> None:
    table = mounts.table()
    assert table, "no /proc/self/mountinfo"
    assert mounts.mounted("/") is not None


# -- the guards: an ordinary process is refused everything machine-wide ---------------


def test_not_pid1_here() -> None:
    assert os.getpid() != 1
    assert linux.pid1_scope() is None


# Each call is harmless even if its guard were broken (a missing path, an invalid reboot
# command, signal 0): a test must not be able to change the machine it runs on.
@pytest.mark.parametrize("call", [
    lambda: linux.mount("tmpfs", "/nonexistent-roost-test", "tmpfs"),
    lambda: linux.mount(None, "/nonexistent-roost-test", None,
                        linux.MS_REMOUNT | linux.MS_RDONLY),
    lambda: linux.umount("/nonexistent-roost-test"),
    lambda: linux.pivot_root("/nonexistent-a", "/nonexistent-b"),
    lambda: linux.reboot(0x12345),
    lambda: linux.swapoff("/nonexistent-roost-test"),
    lambda: linux.loop_detach("/nonexistent-roost-test"),
    lambda: linux.kill_all(0),
], ids=["mount", "remount", "umount", "pivot_root", "reboot", "swapoff", "loop", "kill_all"])
def test_machine_wide_calls_refuse_outside_pid1(call) -> None:
    with pytest.raises(linux.NotPid1, match="not PID 1"):
        call()


def test_init_refuses_outside_pid1(capsys: pytest.CaptureFixture[str]) -> None:
    assert boot.main([]) == 2
    assert "must run as PID 1" in capsys.readouterr().err
