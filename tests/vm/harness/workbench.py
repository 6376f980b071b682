"""The per-test workbench the ``vm`` fixture hands out."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .assets import Assets
from .console import BootError, BootResult
from .fscheck import CleanReport, check_clean, read_file
from .qemu import boot
from .rootfs import ExtraFile, RootImage, build_root


class VM:
    """One scenario's workbench: build images under ``workdir``, boot them, inspect them.

    Every boot and build is recorded in ``records`` (name, seconds) for reports.
    """

    def __init__(self, assets: Assets, workdir: Path) -> None:
        self.assets = assets
        self.workdir = workdir
        self.records: list[tuple[str, float]] = []
        self._count = 0

    def build(self, layout: str = "disk", extra_files: Mapping[str, ExtraFile] | None = None,
              **kwargs: Any) -> RootImage:
        """:func:`build_root` in a fresh subdirectory of the workbench."""
        self._count += 1
        image = build_root(self.workdir / f"{self._count:02d}-{layout}", self.assets,
                           layout=layout, extra_files=extra_files, **kwargs)
        self.records.append((f"build {layout}", image.timings["total"]))
        return image

    def boot(self, image: RootImage, **kwargs: Any) -> BootResult:
        """:func:`boot` with this workbench's assets (same keyword arguments)."""
        try:
            result = boot(self.assets, image, **kwargs)
        except BootError as exc:
            self.records.append(("boot (failed)", exc.result.exited_at))
            raise
        self.records.append(("boot", result.exited_at))
        return result

    def check_clean(self, image: RootImage) -> CleanReport:
        """:func:`check_clean`."""
        return check_clean(image)

    def read_file(self, image: RootImage, guest_path: str) -> bytes:
        """:func:`read_file`."""
        return read_file(image, guest_path)
