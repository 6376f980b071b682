"""VM boot and poweroff: a real kernel under qemu (TCG), roost as PID 1 against busybox init.

The same kernel, stage-0 initramfs and ext4 root image (tests/vm/harness/) with 20
services (`sleep 3600`); only PID 1 differs.  roost: `/sbin/init` -> roost with 20 simple
services in /etc/roost and a oneshot that requires all of them.  busybox init (Debian
busybox-static): an /etc/inittab that mounts the same API filesystems (sysinit), starts
the 20 services (once) and then the same last step.  That last step writes the guest's
/proc/uptime (seconds since the kernel started) to the console, then runs the init's own
`poweroff` (roost's client through the control socket; busybox's SIGUSR2).

Measured: kernel start to all services up (the guest's uptime at the last step), and the
poweroff request to qemu's exit (host clock, from the console line to the process exit:
stop services, kill the rest, unmount or remount read-only, reboot(2)).  Under TCG every
instruction is emulated, so both are several times what the same machine takes on KVM or
hardware; the comparison between inits is the point.  Boots are interleaved.
"""

from __future__ import annotations

import time

from bench.core import Ctx, Result, Skip, Table, fmt

NAME = "vm-boot"
TITLE = "VM boot to ready, and poweroff"
ORDER = 90

SERVICES = 20
LIB = "/usr/lib/roost-vm-bench"
READY_MARK = "ROOST-VM all-up"
POWEROFF_MARK = "ROOST-VM poweroff-now"

LAST_STEP = f"""#!/bin/sh
# The last step of the boot: report the kernel's uptime, then ask the init to power off.
echo "{READY_MARK} $(cut -d' ' -f1 /proc/uptime)" > /dev/console
echo "{POWEROFF_MARK}" > /dev/console
exec "$@"
"""

INITTAB = "\n".join([
    "::sysinit:/bin/mount -t proc -o nosuid,nodev,noexec proc /proc",
    "::sysinit:/bin/mount -t sysfs -o nosuid,nodev,noexec sysfs /sys",
    "::sysinit:/bin/mkdir -p /dev/pts /dev/shm",
    "::sysinit:/bin/mount -t devpts -o nosuid,noexec devpts /dev/pts",
    "::sysinit:/bin/mount -t tmpfs -o nosuid,nodev,mode=1777 tmpfs /dev/shm",
    "::sysinit:/bin/mount -t tmpfs -o nosuid,nodev,mode=0755 tmpfs /run",
    "::sysinit:/bin/mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 /sys/fs/cgroup",
    "::sysinit:/bin/hostname -F /etc/hostname",
    *["::once:/bin/sleep 3600" for _ in range(SERVICES)],
    f"::once:{LIB}/last-step /bin/busybox poweroff",
    "::shutdown:/bin/busybox umount -a -r",
]) + "\n"


def _images(vm, harness):  # type: ignore[no-untyped-def]
    last = (LAST_STEP.encode(), 0o755)
    roost_files = {f"/etc/roost/svc{i:02d}.toml": 'command = ["sleep", "3600"]\n'
                   for i in range(SERVICES)}
    requires = ", ".join(f'"svc{i:02d}"' for i in range(SERVICES))
    roost_files["/etc/roost/zz-last.toml"] = (
        f'type = "oneshot"\nrequires = [{requires}]\n'
        f'command = ["{LIB}/last-step", "/sbin/poweroff"]\n')
    roost_files[f"{LIB}/last-step"] = last
    busybox_files = {"/etc/inittab": INITTAB, f"{LIB}/last-step": last,
                     f"{LIB}/init": harness.Symlink("/bin/busybox")}
    return {"roost": (vm.build(layout="disk", extra_files=roost_files), harness.ROOST_INIT),
            "busybox init": (vm.build(layout="disk", extra_files=busybox_files),
                             f"{LIB}/init")}


def run(ctx: Ctx) -> Result:
    """Boot each init's image in turn, interleaved, and read the two times off the console."""
    res = Result(NAME, TITLE, __doc__ or "")
    try:
        from tests.vm import harness
    except ImportError as exc:
        raise Skip(f"the VM harness (tests/vm/harness/) cannot be imported: {exc}") from None
    reason = harness.missing_tools()
    if reason:
        raise Skip(reason)
    try:
        assets = harness.ensure_assets()
    except harness.AssetsUnavailable as exc:
        raise Skip(str(exc)) from None
    vm = harness.VM(assets, ctx.workdir("vm-boot"))
    images = _images(vm, harness)
    reps = ctx.n(2, 5)
    ready = Table(f"Kernel start to {SERVICES} services up (guest uptime)", "s",
                  baselines=("busybox init",))
    down = Table("poweroff requested to qemu exit", "s", baselines=("busybox init",))
    raw: list[dict[str, object]] = []
    failures: list[str] = []
    for rep in range(reps):
        for name, (image, init) in images.items():
            t0 = time.monotonic()
            try:
                result = vm.boot(image, init=init, deadline=120, name=f"{name}-{rep}")
            except harness.BootError as exc:
                failures.append(f"{name}: {str(exc).splitlines()[0]}")
                continue
            up = result.value("all-up")
            ok = result.shutdown == "poweroff" and up is not None
            if not ok:
                failures.append(f"{name} boot {rep}: ended by {result.shutdown}, "
                                f"all-up {up!r} (console: {result.log})")
                continue
            ready.add(name, [float(up.split()[0])])  # type: ignore[union-attr]
            down.add(name, [result.time_from(POWEROFF_MARK)])
            raw.append({"init": name, "rep": rep, "all_up_s": float(up.split()[0]),  # type: ignore[union-attr]
                        "poweroff_to_exit_s": result.time_from(POWEROFF_MARK),
                        "qemu_wall_s": time.monotonic() - t0})
    res.tables += [ready, down]
    res.notes += failures
    res.raw = {"boots": raw, "kernel": assets.kernel.package, "services": SERVICES}
    for table, what in ((ready, "boot to ready"), (down, "poweroff to exit")):
        ratio = table.ratio("busybox init")
        if ratio is not None:
            res.headlines.append(f"VM {what} ({SERVICES} services, TCG): roost "
                                 f"{fmt(table.row('roost').median)} s, busybox init "  # type: ignore[union-attr]
                                 f"{fmt(table.row('busybox init').median)} s "  # type: ignore[union-attr]
                                 f"({fmt(ratio)}x)")
    return res
