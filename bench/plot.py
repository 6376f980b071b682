"""Draw the plots a run asked for (run with the bench venv's interpreter, which has matplotlib).

Usage: python -m bench.plot bench/out/results.json bench/plots
Each scenario's raw["plots"] holds specs: {"kind": "lines", "file", "xlabel",
"ylabel", "xlog", "ylog", "series": {name: [[x, y], ...]}} or
{"kind": "cdf", "file", "xlabel", "xlog", "series": {name: [sample, ...]}}.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

# One colour per program across every plot; roost's stands out and no peer shares it.
COLOURS = {"roost": "#c0392b", "supervisord": "#1f77b4", "circus": "#ff7f0e",
           "runit": "#2ca02c", "s6": "#9467bd", "tini": "#1f77b4", "dumb-init": "#ff7f0e",
           "catatonit": "#2ca02c"}


def style(name: str) -> dict[str, Any]:
    """roost is thick and red; each peer keeps its colour in every plot."""
    key = name.split(" ")[0]
    if key == "roost":
        return {"color": COLOURS["roost"], "linewidth": 2.5, "zorder": 5}
    return {"color": COLOURS.get(key, "#7f7f7f"), "linewidth": 1.5}


def draw(spec: dict[str, Any], outdir: Path) -> None:
    """One figure from one spec."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name, data in spec["series"].items():
        if not data:
            continue
        if spec["kind"] == "cdf":
            xs = sorted(data)
            ys = [(i + 1) / len(xs) for i in range(len(xs))]
            ax.step(xs, ys, where="post", label=name, **style(name))
        else:
            xs = [p[0] for p in data]
            ys = [p[1] for p in data]
            ax.plot(xs, ys, marker="o", label=name, **style(name))
    if spec.get("xlog") == "symlog":
        ax.set_xscale("symlog", linthresh=1.0)
    elif spec.get("xlog"):
        ax.set_xscale("log")
    if spec.get("ylog"):
        ax.set_yscale("log")
    ax.set_xlabel(spec.get("xlabel", ""))
    ax.set_ylabel(spec.get("ylabel", "fraction" if spec["kind"] == "cdf" else ""))
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(outdir / spec["file"])
    plt.close(fig)


def main() -> int:
    """Draw every plot of a results file."""
    results = json.loads(Path(sys.argv[1]).read_text())
    outdir = Path(sys.argv[2])
    outdir.mkdir(parents=True, exist_ok=True)
    for scenario in results["scenarios"]:
        for spec in scenario.get("raw", {}).get("plots", []):
            draw(spec, outdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
