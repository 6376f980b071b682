"""roost as PID 1 of a real Linux kernel under qemu: boot, power requests, clean shutdown.

Scenarios (each one boot, or two for the reboot):

* services come up, a service runs `poweroff`, qemu exits, the root is clean;
* the root is an ext4 image on a loop device backed by a file on another ext4 filesystem:
  after poweroff both are clean (roost leaves through its shutdown tmpfs);
* the same with a service that ignores TERM and keeps a file open on the root;
* a poweroff started in the same instant as init (control socket, or --via-signal);
* dracut's convention: /run/initramfs/shutdown takes over after the pivot;
* reboot: the machine boots a second time, then powers off.

The guest helpers live in tests/vm/system/.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from . import harness

HERE = Path(__file__).resolve().parent / "system"
LIB = "/usr/lib/roost-vm-system"
SLEEPERS = {f"/etc/roost/svc{i}.toml": 'command = ["sleep", "3600"]\n' for i in range(3)}

pytestmark = pytest.mark.vm


def guest_files(*scripts: str) -> dict[str, harness.ExtraFile]:
    """Our guest scripts, executable, under /usr/lib/roost-vm-system."""
    return {f"{LIB}/{name}": ((HERE / name).read_bytes(), 0o755) for name in scripts}


def all_up_service(after: list[str]) -> dict[str, harness.ExtraFile]:
    """A oneshot that waits for `after`, reports, and runs /sbin/poweroff."""
    requires = ", ".join(f'"{name}"' for name in after)
    return {"/etc/roost/zz-all-up.toml":
            f'type = "oneshot"\nrequires = [{requires}]\ncommand = ["{LIB}/all-up"]\n'}


def assert_powered_off(result: harness.BootResult) -> None:
    why = result.describe()
    assert result.boots == 1, why
    assert result.shutdown == "poweroff", why
    assert result.returncode == 0, why
    assert "starting as PID 1 of the machine" in result.console, why
    assert "panic" not in result.shutdowns, why


def test_boot_services_then_poweroff_from_a_service(vm: harness.VM) -> None:
    files = {**SLEEPERS, **guest_files("all-up"),
             **all_up_service([f"svc{i}" for i in range(3)])}
    image = vm.build(layout="disk", extra_files=files)
    result = vm.boot(image, deadline=90)
    assert_powered_off(result)
    why = result.describe()
    assert result.value("all-up") is not None, why
    console = result.console
    for i in range(3):
        assert f"svc{i}: up" in console, why
    assert "poweroff requested by uid 0 (" in console, why
    assert "mounted /proc /sys /dev/pts /dev/shm /run /sys/fs/cgroup" in console, why
    assert "powering off" in console, why
    report = vm.check_clean(image)
    assert report.clean, report.describe()


def test_loop_root_is_unmounted_clean(vm: harness.VM) -> None:
    files = {**SLEEPERS, **guest_files("all-up"),
             **all_up_service([f"svc{i}" for i in range(3)])}
    image = vm.build(layout="loop", extra_files=files)
    result = vm.boot(image, deadline=120)
    assert_powered_off(result)
    why = result.describe()
    console = result.console
    assert "leaving the root for a shutdown tmpfs" in console, why
    assert "finale: every filesystem is unmounted" in console, why
    assert "finale: detached /dev/loop0" in console, why
    report = vm.check_clean(image)
    assert set(report.checks) == {"root", "outer"}
    assert report.clean, report.describe()


def test_loop_root_clean_despite_a_service_holding_a_file_and_ignoring_term(
        vm: harness.VM) -> None:
    files = {**SLEEPERS, **guest_files("all-up", "holder"),
             "/etc/roost/holder.toml": f'command = ["{LIB}/holder"]\nstop_timeout = 2\n',
             **all_up_service(["svc0", "svc1", "svc2", "holder"])}
    image = vm.build(layout="loop", extra_files=files)
    result = vm.boot(image, deadline=120)
    assert_powered_off(result)
    why = result.describe()
    console = result.console
    assert "holder: up" in console, why
    assert "finale: every filesystem is unmounted" in console, why
    report = vm.check_clean(image)
    assert report.clean, report.describe()
    # The holder really wrote to the root until it was killed.
    assert vm.read_file(image, "/var/lib/holder.log").startswith(b"tick\n")


@pytest.mark.parametrize("via", ["socket", "signal"])
def test_poweroff_started_with_init_is_never_lost(vm: harness.VM, via: str) -> None:
    files = {**SLEEPERS, **guest_files(f"race-{via}")}
    image = vm.build(layout="disk", extra_files=files)
    result = vm.boot(image, init=f"{LIB}/race-{via}", deadline=90)
    assert_powered_off(result)
    why = result.describe()
    console = result.console
    if via == "socket":
        assert "poweroff requested by uid 0 (" in console, why
        assert "poweroff: acknowledged by init" in console, why
    else:
        assert "poweroff requested by SIGUSR2" in console, why
        assert "poweroff: signalled PID 1" in console, why
    report = vm.check_clean(image)
    assert report.clean, report.describe()


def test_dracut_shutdown_program_takes_over(vm: harness.VM) -> None:
    """An executable /run/initramfs/shutdown gets the machine, the verb, and the old root."""
    files = {**SLEEPERS, **guest_files("all-up", "dracut-setup"),
             "/etc/roost/roost.toml": 'finale = "always"\n',
             "/etc/roost/dracut.toml": f'type = "oneshot"\ncommand = ["{LIB}/dracut-setup"]\n',
             **all_up_service(["svc0", "dracut"])}
    image = vm.build(layout="disk", extra_files=files)
    result = vm.boot(image, deadline=90)
    assert_powered_off(result)
    why = result.describe()
    assert "pivoted into /run/initramfs; exec'ing its /shutdown poweroff" in result.console, why
    assert result.value("dracut-shutdown") == "poweroff 0", why
    report = vm.check_clean(image)
    assert report.clean, report.describe()


def test_reboot_boots_again_then_powers_off(vm: harness.VM) -> None:
    files = {**SLEEPERS, **guest_files("boot-twice"),
             "/etc/roost/zz-boot-twice.toml":
             f'type = "oneshot"\nrequires = ["svc0"]\ncommand = ["{LIB}/boot-twice"]\n'}
    image = vm.build(layout="disk", extra_files=files)
    result = vm.boot(image, allow_reboot=True, max_boots=2, deadline=180)
    why = result.describe()
    assert result.boots == 2, why
    assert result.shutdowns == ["reboot", "poweroff"], why
    assert result.values("boot-count") == ["1", "2"], why
    assert result.returncode == 0, why
    assert "reboot requested by uid 0 (" in result.console, why
    report = vm.check_clean(image)
    assert report.clean, report.describe()
    assert vm.read_file(image, "/var/lib/boot-count") == b"2\n"
