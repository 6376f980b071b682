"""``python -m tests.vm.harness``: fetch the assets, or build an image and boot it by hand."""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from .assets import ensure_assets
from .console import BootError
from .fscheck import check_clean
from .paths import PLACEHOLDER_INIT, ROOST_INIT
from .qemu import boot
from .rootfs import ExtraFile, build_root
from .tools import missing_tools


def _main(argv: Sequence[str] | None = None) -> int:
    """Manual front end: fetch assets, or build an image and boot it with the console shown."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.vm.harness",
        description="Boot roost (or the placeholder PID 1) on a real kernel under qemu.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("assets", help="fetch and build the cached assets, print paths and timings")
    b = sub.add_parser("boot", help="build a root image and boot it, console on stdout")
    b.add_argument("--layout", choices=("disk", "loop"), default="disk")
    b.add_argument("--init", default=ROOST_INIT,
                   help=f"PID 1 inside the guest (placeholder: {PLACEHOLDER_INIT})")
    b.add_argument("--append", action="append", default=[], metavar="ARG",
                   help="extra kernel command-line argument (repeatable)")
    b.add_argument("--file", action="append", default=[], metavar="GUEST=HOST",
                   help="copy HOST into the image at GUEST (mode kept; repeatable)")
    b.add_argument("--allow-reboot", action="store_true")
    b.add_argument("--max-boots", type=int)
    b.add_argument("--deadline", type=float)
    b.add_argument("--quiet-kernel", action="store_true", help="add `quiet` to the command line")
    b.add_argument("--workdir", type=Path, help="keep images here (default: a temp dir)")
    args = parser.parse_args(argv)

    reason = missing_tools()
    if reason:
        print(reason, file=sys.stderr)
        return 2
    assets = ensure_assets()
    if args.command == "assets":
        k = assets.kernel
        print(f"kernel   {k.package} {k.version} ({k.release}) "
              f"{'PVH vmlinux' if k.pvh else 'bzImage'}: {k.image}")
        print(f"modules  {' '.join(m.name for m in k.modules)}")
        print(f"busybox  {assets.busybox}")
        print(f"python   {assets.python_tree}")
        print(f"initrd   {assets.initramfs}")
        print("timings  " + " ".join(f"{k}={v:.2f}s" for k, v in assets.timings.items()))
        return 0
    extra: dict[str, ExtraFile] = {}
    for spec in args.file:
        guest, _, host = spec.partition("=")
        extra[guest] = (Path(host).read_bytes(), Path(host).stat().st_mode & 0o7777)
    with contextlib.ExitStack() as stack:
        workdir = args.workdir or Path(stack.enter_context(
            tempfile.TemporaryDirectory(prefix="roost-vm-")))
        image = build_root(workdir, assets, layout=args.layout, extra_files=extra)
        print("image    " + " ".join(f"{k}={v:.2f}s" for k, v in image.timings.items()),
              file=sys.stderr)
        try:
            result = boot(assets, image, init=args.init, append=args.append,
                          allow_reboot=args.allow_reboot, max_boots=args.max_boots,
                          deadline=args.deadline, quiet=args.quiet_kernel,
                          on_line=lambda line: print(f"[{line.t:7.3f}] {line.text}", flush=True))
        except BootError as exc:
            print(exc, file=sys.stderr)
            return 1
        report = check_clean(image)
        print(f"qemu exit {result.returncode}, ended by {result.shutdown}, "
              f"{result.exited_at:.2f}s", file=sys.stderr)
        print(report.describe(), file=sys.stderr)
    return 0
