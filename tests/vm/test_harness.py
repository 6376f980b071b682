"""Self-test of the VM harness, driven by the placeholder PID 1 in guest/pid1.py.

What it proves: both root layouts boot to a PID 1 on ext4, a correct shutdown leaves every
filesystem clean and the clean-check notices when it was not, a guest can really reboot, a
halted machine and a failing stage 0 end the run instead of hanging it, and the deadline
holds.  The host-only tests at the bottom need no qemu.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from . import harness

# PID 1 of these scenarios.  roost's own scenarios use harness.ROOST_INIT (/sbin/init).
INIT = harness.PLACEHOLDER_INIT


@pytest.mark.vm
@pytest.mark.parametrize("layout", ["disk", "loop"])
def test_pid1_boots_and_powers_off_clean(vm: harness.VM, layout: str) -> None:
    image = vm.build(layout=layout)
    result = vm.boot(image, init=INIT)
    why = result.describe()

    assert result.boots == 1, why
    assert result.value("pid") == "1", why
    assert result.value("rootfs") == "ext4", why
    assert result.shutdown == "poweroff", why
    assert result.returncode == 0, why
    if layout == "loop":
        assert result.value("root-source", "").startswith("/dev/loop"), why
        assert result.value("outer-fstype") == "ext4", why
        assert result.value("outer-holds-root-img") == "True", why
        assert result.value("loop-backing") == "/outer/root.img", why
        assert result.value("finale") == "unmounted root outer", why
    else:
        assert result.value("root-source") == "/dev/vda", why
        assert result.value("root-remounted") == "ro", why

    report = vm.check_clean(image)
    assert set(report.checks) == ({"root", "outer"} if layout == "loop" else {"root"})
    assert report.clean, report.describe()
    # What the guest wrote is on the disk after the VM is gone.
    assert vm.read_file(image, "/var/lib/roost-vm/boots") == b"1\n"


@pytest.mark.vm
def test_roost_launcher_runs_as_pid1_through_sbin_init(vm: harness.VM, tmp_path) -> None:
    # A stand-in roost package: the image's /usr/bin/roost and /sbin/init must reach its
    # main() as PID 1 with argv[0] intact, then it hands over to the placeholder to power off.
    fake = tmp_path / "fake-src" / "roost"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "__main__.py").write_text(
        "import os, sys\n"
        f"sys.path.insert(0, {harness.GUEST_LIB!r})\n"
        "import say\n"
        "def main():\n"
        "    say.say('argv0', sys.argv[0])\n"
        "    say.say('roost-pid', os.getpid())\n"
        "    say.say('isolated', sys.flags.isolated, sys.flags.no_site)\n"
        f"    os.execv({INIT!r}, [{INIT!r}])\n")
    image = vm.build(roost_src=fake)
    result = vm.boot(image, init=harness.ROOST_INIT)
    why = result.describe()
    assert result.value("argv0") == "/sbin/init", why
    assert result.value("roost-pid") == "1", why
    assert result.value("isolated") == "1 1", why
    assert result.shutdown == "poweroff", why
    assert vm.check_clean(image).clean


@pytest.mark.vm
def test_clean_check_catches_filesystems_left_mounted(vm: harness.VM) -> None:
    image = vm.build(layout="loop")
    result = vm.boot(image, init=INIT, append=["roost.vmtest=dirty"])
    assert result.value("dirty") is not None, result.describe()
    assert result.shutdown == "poweroff", result.describe()

    report = vm.check_clean(image)
    assert not report.clean, report.describe()
    for name in ("root", "outer"):
        check = report.checks[name]
        assert not check.clean, check.describe()
        assert check.needs_recovery, check.describe()


@pytest.mark.vm
def test_guest_reboots_then_powers_off(vm: harness.VM) -> None:
    image = vm.build()
    result = vm.boot(image, init=INIT, append=["roost.vmtest=reboot"], allow_reboot=True,
                     max_boots=2)
    why = result.describe()
    assert result.boots == 2, why
    assert result.values("boot") == ["1", "2"], why
    assert result.values("pid") == ["1", "1"], why
    assert result.shutdowns == ["reboot", "poweroff"], why
    assert result.returncode == 0, why
    assert vm.check_clean(image).clean
    assert vm.read_file(image, "/var/lib/roost-vm/boots") == b"2\n"


@pytest.mark.vm
def test_halted_machine_is_stopped_by_the_host(vm: harness.VM) -> None:
    image = vm.build()
    result = vm.boot(image, init=INIT, append=["roost.vmtest=halt"])
    assert result.shutdown == "halt", result.describe()
    assert result.killed_reason == "machine halted", result.describe()
    assert vm.check_clean(image).clean


@pytest.mark.vm
def test_stage0_reports_a_missing_init_and_powers_off(vm: harness.VM) -> None:
    image = vm.build()
    result = vm.boot(image, init="/sbin/no-such-init")
    assert result.value("stage0-error") == "no init /sbin/no-such-init in the root image", \
        result.describe()
    assert result.value("pid") is None
    assert result.shutdown == "poweroff", result.describe()
    assert result.returncode == 0


@pytest.mark.vm
def test_pid1_exit_is_reported_as_a_panic(vm: harness.VM) -> None:
    image = vm.build(extra_files={"/usr/local/bin/quit": harness.script("raise SystemExit(3)")})
    result = vm.boot(image, init="/usr/local/bin/quit")
    assert result.shutdown == "panic", result.describe()
    assert "Attempted to kill init" in result.console


@pytest.mark.vm
def test_guest_can_end_qemu_with_a_status(vm: harness.VM) -> None:
    # say.py --exit N writes N to the isa-debug-exit port: qemu ends with status 2N+1.
    image = vm.build(extra_files={"/usr/local/bin/bail": (
        f"#!/bin/sh\n{harness.GUEST_LIB}/say.py bailing out\n"
        f"exec {harness.GUEST_LIB}/say.py --exit 3\n", 0o755)})
    result = vm.boot(image, init="/usr/local/bin/bail")
    assert result.value("bailing") == "out", result.describe()
    assert result.returncode == 7, result.describe()
    assert result.shutdown is None


@pytest.mark.vm
def test_deadline_kills_qemu_and_attaches_the_console(vm: harness.VM) -> None:
    hang = harness.script(
        "import sys, time\n"
        f"sys.path.insert(0, {harness.GUEST_LIB!r})\n"
        "import say\n"
        "say.say('hanging')\n"
        "while True:\n"
        "    time.sleep(1)\n")
    image = vm.build(extra_files={"/usr/local/bin/hang": hang})
    with pytest.raises(harness.BootError) as failure:
        vm.boot(image, init="/usr/local/bin/hang", deadline=15)
    result = failure.value.result
    assert result.deadline_hit
    assert result.returncode is None
    assert result.value("hanging") == "", result.describe()
    assert "--- console" in str(failure.value)
    assert result.log.read_text()


# ---------------------------------------------------------------------------- host only


def test_verdict_lines_are_parsed_from_noisy_console() -> None:
    lines = [
        harness.ConsoleLine(0.5, "[    1.000000] Run /init as init process"),
        harness.ConsoleLine(1.0, "ROOST-VM pid 1"),
        harness.ConsoleLine(1.5, "ROOST-VM note two words  \r"),
        harness.ConsoleLine(2.0, "[    2.1] x ROOST-VM flag"),
        harness.ConsoleLine(2.5, "NOT-ROOST-VMX pid 7"),
    ]
    verdicts = harness.parse_verdicts(lines)
    assert [(v.key, v.value) for v in verdicts] == [
        ("pid", "1"), ("note", "two words"), ("flag", "")]
    assert verdicts[0].t == 1.0


def test_module_load_order_puts_dependencies_and_softdeps_first() -> None:
    index = harness._ModIndex()
    for name, deps in {"ext4": ["jbd2", "mbcache"], "jbd2": [], "mbcache": [],
                       "crc32c_generic": [], "crc32c_intel": [], "virtio_blk": ["virtio"],
                       "virtio": []}.items():
        index.path[name] = f"kernel/{name}.ko"
        index.depends[name] = deps
    index.pre["ext4"] = ["crc32c"]
    index.aliases["crc32c"] = ["crc32c_intel", "crc32c_generic"]
    index.builtin.add("virtio")
    assert index.load_order(["virtio_blk", "ext4"]) == [
        "virtio_blk", "crc32c_generic", "jbd2", "mbcache", "ext4"]


def test_cpio_is_readable_newc() -> None:
    data = harness._cpio([("d", 0o040755, b"", 0), ("d/f", 0o100644, b"hello", 0)])
    assert data.startswith(b"070701")
    assert b"d/f\0" in data and b"hello" in data
    assert data.rstrip(b"\0").endswith(b"TRAILER!!!")
    assert len(data) % 4 == 0


def test_command_line_help_runs() -> None:
    proc = subprocess.run([sys.executable, "-m", "tests.vm.harness", "--help"],
                          cwd=harness.REPO, capture_output=True, text=True, timeout=60,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert "boot" in proc.stdout
