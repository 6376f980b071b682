"""The qemu process: its command line, and one boot watched on the console under a deadline."""

from __future__ import annotations

import contextlib
import ctypes
import os
import selectors
import subprocess
import time
from collections.abc import Callable, Sequence

from .assets import Assets
from .console import _SHUTDOWN_LINES, BootError, BootResult, ConsoleLine, parse_verdicts
from .paths import BOOT_MARKER, QEMU, ROOST_INIT
from .rootfs import RootImage


def qemu_command(assets: Assets, image: RootImage, *, init: str, append: Sequence[str] = (),
                 allow_reboot: bool = False, memory_mb: int = 512, quiet: bool = False,
                 rootflags: str = "rw") -> list[str]:
    """The qemu command line for one boot of ``image`` with ``init`` as PID 1."""
    cmdline = ["console=ttyS0", "panic=-1", *(["quiet"] if quiet else []),
               f"roost.layout={image.layout}", f"roost.init={init}",
               f"roost.rootflags={rootflags}", *append]
    for arg in cmdline:
        if not arg or any(c.isspace() for c in arg):
            raise ValueError(f"kernel command line argument {arg!r} is empty or has spaces")
    cmd = [
        QEMU, "-accel", "tcg", "-cpu", "max", "-smp", "1", "-m", str(memory_mb),
        "-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio",
        "-kernel", os.fspath(assets.kernel.image), "-initrd", os.fspath(assets.initramfs),
        "-append", " ".join(cmdline),
        "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
    ]
    for drive in image.qemu_drives:
        cmd += ["-drive", f"file={drive},format=raw,if=virtio"]
    if not allow_reboot:
        cmd.append("-no-reboot")
    return cmd


def _die_with_parent() -> None:
    """In the qemu child before exec: SIGKILL it if the test process dies first."""
    ctypes.CDLL(None, use_errno=True).prctl(1, 9, 0, 0, 0)  # PR_SET_PDEATHSIG, SIGKILL


def boot(assets: Assets, image: RootImage, *, init: str = ROOST_INIT,
         append: Sequence[str] = (), allow_reboot: bool = False, max_boots: int | None = None,
         deadline: float | None = None, memory_mb: int = 512, quiet: bool = False,
         rootflags: str = "rw", on_line: Callable[[ConsoleLine], None] | None = None,
         name: str = "boot") -> BootResult:
    """Boot ``image`` with ``init`` as PID 1 and wait for qemu to exit.

    Raises BootError (console attached) when ``deadline`` seconds pass or the guest boots more
    than ``max_boots`` times.  A halted machine is stopped and reported as ``shutdown == "halt"``.
    The kernel logs at full verbosity by default (``quiet=True`` saves ~0.1 s): failure
    messages then show what the kernel said.
    """
    max_boots = max_boots or (2 if allow_reboot else 1)
    deadline = deadline or 60.0 * max_boots
    cmd = qemu_command(assets, image, init=init, append=append, allow_reboot=allow_reboot,
                       memory_mb=memory_mb, quiet=quiet, rootflags=rootflags)
    log = image.workdir / f"{name}.console.log"
    errlog = image.workdir / f"{name}.qemu-stderr.log"
    lines: list[ConsoleLine] = []
    shutdowns: list[str] = []
    boots = 0
    killed: str | None = None
    deadline_hit = False
    panic_at: float | None = None
    with open(log, "w") as log_file, open(errlog, "w+") as err_file:
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=err_file, preexec_fn=_die_with_parent)
        assert proc.stdout is not None
        os.set_blocking(proc.stdout.fileno(), False)
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        pending = b""
        try:
            eof = False
            while not eof:
                now = time.monotonic() - t0
                if now > deadline:
                    deadline_hit, killed = True, f"deadline of {deadline:.0f}s passed"
                    break
                if panic_at is not None and now > panic_at + 3:
                    killed = "kernel panic"
                    break
                for _key, _ev in sel.select(timeout=min(0.5, max(0.0, deadline - now))):
                    chunk = os.read(proc.stdout.fileno(), 65536)
                    if not chunk:
                        eof = True
                        break
                    pending += chunk
                    *complete, pending = pending.split(b"\n")
                    t = time.monotonic() - t0
                    for raw in complete:
                        line = ConsoleLine(t, raw.decode(errors="replace").rstrip("\r"))
                        lines.append(line)
                        log_file.write(f"[{t:8.3f}] {line.text}\n")
                        if on_line is not None:
                            on_line(line)
                        if BOOT_MARKER in line.text:
                            boots += 1
                        for text, kind in _SHUTDOWN_LINES:
                            if text in line.text:
                                shutdowns.append(kind)
                                if kind == "panic" and panic_at is None:
                                    panic_at = t
                    log_file.flush()
                if killed is None and boots > max_boots:
                    killed = f"guest booted more than {max_boots} times"
                    break
                if killed is None and shutdowns[-1:] == ["halt"]:
                    killed = "machine halted"
                    break
                if eof or proc.poll() is not None:
                    # Drain what is left, then stop.
                    with contextlib.suppress(BlockingIOError):
                        rest = os.read(proc.stdout.fileno(), 1 << 20)
                        if rest:
                            pending += rest
                            continue
                    eof = True
        finally:
            if killed is None:
                # The console closes a moment before qemu's exit status is ready.
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=max(1.0, min(10.0, deadline - (time.monotonic() - t0))))
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
            sel.close()
            proc.stdout.close()
        exited_at = time.monotonic() - t0
        if pending:
            lines.append(ConsoleLine(exited_at, pending.decode(errors="replace").rstrip("\r")))
            log_file.write(f"[{exited_at:8.3f}] {lines[-1].text}\n")
            # The last line may come without its newline (qemu exits at once after
            # "reboot: Power down"): it still says how the machine ended.
            shutdowns += [kind for text, kind in _SHUTDOWN_LINES if text in lines[-1].text]
        err_file.seek(0)
        stderr = err_file.read()
    result = BootResult(
        returncode=None if killed else proc.returncode, lines=lines,
        verdicts=parse_verdicts(lines), shutdowns=shutdowns, boots=boots, exited_at=exited_at,
        deadline_hit=deadline_hit, killed_reason=killed, log=log, qemu_stderr=stderr,
    )
    if deadline_hit or (killed and killed.startswith("guest booted")):
        raise BootError(f"qemu stopped: {killed}", result)
    return result
