"""`roost analyze` against a real roost: the SVG of the last start, rendered by a real SVG
renderer, and the critical chain, for root and for another user."""

from __future__ import annotations

import struct
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests import debs
from tests.ns.supervisor_kit import ConfigDir, running

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("unshare_required")]

NOBODY = 65534
SVG = "{http://www.w3.org/2000/svg}"
# Ready (a newline on fd 3) after a delay, then idle.
READY_AFTER = "import os, sys, time; time.sleep(float(sys.argv[1])); os.write(3, b'\\n'); " \
              "time.sleep(600)"


def boot(config: ConfigDir) -> None:
    """db (ready after 0.6 s) <- migrate (a oneshot of 0.3 s) <- web (ready after 0.2 s)."""
    ready = config.python("ready", READY_AFTER)
    config.service("db", command=[*ready, "0.6"], ready="fd:3")
    config.service("migrate", type="oneshot", requires=["db"],
                   command=config.python("migrate", "import time; time.sleep(0.3)"))
    config.service("web", command=[*ready, "0.2"], ready="fd:3", requires=["db", "migrate"])
    config.service("lone", command=config.python("lone", "import time; time.sleep(600)"))
    config.service("spare", autostart=False, command=[*ready, "0"], ready="fd:3")


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_the_plot_shows_every_started_service_and_its_requirements(tmp_path: Path) -> None:
    config = ConfigDir(tmp_path / "conf")
    boot(config)
    with running(config, "pid1", tmp_path) as roost:
        roost.wait_state("web", "up", timeout=30)
        # Any user may ask: the picture is made of what `status` shows.
        done = roost.cli("analyze", user=NOBODY)
        assert done.returncode == 0, done.stderr
        chain = roost.cli("analyze", "critical-chain", "web", user=NOBODY)
        assert chain.returncode == 0, chain.stderr
        never = roost.cli("analyze", "critical-chain", "spare")
    svg = ET.fromstring(done.stdout)
    assert svg.tag == f"{SVG}svg"
    bars = {r.find(f"{SVG}title").text.split(":")[0]: r  # type: ignore[union-attr]
            for r in svg.iter(f"{SVG}rect") if r.get("class") == "starting"}
    assert sorted(bars) == ["db", "lone", "migrate", "web"], "spare never started"
    links = [line for line in svg.iter(f"{SVG}line") if line.get("class") == "after"]
    assert len(links) == 3, "web after db and migrate, migrate after db"

    def start(name: str) -> float:
        return float(bars[name].get("x", "nan"))

    def settled(name: str) -> float:
        return float(bars[name].get("x", "nan")) + float(bars[name].get("width", "nan"))

    # The order shows: each bar starts where what it waited for ended.
    assert settled("db") <= start("migrate") + 1
    assert settled("migrate") <= start("web") + 1
    assert start("lone") < settled("db"), "lone waited for nothing"

    lines = chain.stdout.splitlines()
    assert [line.lstrip(" └─").split(" ")[0] for line in lines] == ["web", "migrate", "db"]
    ats = [float(line.split("@")[1].split("s")[0]) for line in lines]
    assert ats[0] > ats[1] > ats[2] >= 0.5, lines  # db took its 0.6 s to be ready
    assert never.returncode == 1 and "spare has not started" in never.stderr

    renderer = debs.program("rsvg-convert")
    if renderer is None:
        pytest.fail("rsvg-convert (Debian's librsvg2-bin) is missing: run `python -m tests.debs`")
    (tmp_path / "boot.svg").write_text(done.stdout)
    subprocess.run([renderer, "-o", str(tmp_path / "boot.png"), str(tmp_path / "boot.svg")],
                   check=True, timeout=60,
                   env={"PATH": "/usr/bin:/bin", **debs.environment(renderer)})
    assert png_size(tmp_path / "boot.png") == (int(svg.get("width", "0")),
                                               int(svg.get("height", "0")))
