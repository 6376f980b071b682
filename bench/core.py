"""Shared pieces of the benchmark suite: paths, the run context, result tables, statistics."""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import statistics
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
OUT = BENCH_DIR / "out"
BIN = OUT / "bin"
PLOTS = BENCH_DIR / "plots"
RESULTS_MD = BENCH_DIR / "RESULTS.md"
CACHE = REPO / ".cache"
BENCH_VENV = CACHE / "bench-venv"
DEV_VENV = REPO / ".venv"
ROOST = DEV_VENV / "bin" / "roost"
# The pyenv `python3` on PATH is a bash shim that costs ~55 ms: never time it.
REAL_PYTHON = Path("/root/.pyenv/versions/3.11.7/bin/python3.11")


def real_python() -> str:
    """The real interpreter: the pyenv one, else the one running the bench."""
    if REAL_PYTHON.exists():
        return str(REAL_PYTHON)
    return os.path.realpath(sys.executable)


class Skip(Exception):
    """A subject or scenario that cannot run here; the reason goes into the report."""


@dataclasses.dataclass
class Row:
    """One subject's samples in a table (seconds, bytes or counts: the table's unit)."""

    subject: str
    samples: list[float]
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.samples) if self.samples else math.nan


@dataclasses.dataclass
class Table:
    """A stats table: median, min, max per subject, and roost's ratio to each peer.

    `scale` turns stored samples into the unit shown (1e3 for seconds shown as ms).
    `lower_is_better` only decides the wording of the summary.
    """

    title: str
    unit: str
    rows: list[Row] = dataclasses.field(default_factory=list)
    scale: float = 1.0
    roost: str = "roost"
    baselines: tuple[str, ...] = ()
    digits: int = 2
    note: str = ""

    def row(self, subject: str) -> Row | None:
        """The row of `subject`, if any."""
        for r in self.rows:
            if r.subject == subject:
                return r
        return None

    def add(self, subject: str, samples: Sequence[float], note: str = "") -> None:
        """Add (or extend) the row of `subject`."""
        existing = self.row(subject)
        if existing is None:
            self.rows.append(Row(subject, list(samples), note))
        else:
            existing.samples.extend(samples)
            if note:
                existing.note = note

    def ratio(self, other: str) -> float | None:
        """median(roost) / median(other), or None when either is missing or zero."""
        a, b = self.row(self.roost), self.row(other)
        if a is None or b is None or not a.samples or not b.samples or b.median == 0:
            return None
        return a.median / b.median

    def to_json(self) -> dict[str, Any]:
        """A plain-data form for bench/out/*.json."""
        d = dataclasses.asdict(self)
        d["kind"] = "stats"
        return d


@dataclasses.dataclass
class Grid:
    """A free-form table (headers and cells) for results that are not sample sets."""

    title: str
    headers: list[str]
    cells: list[list[str]] = dataclasses.field(default_factory=list)
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        """A plain-data form for bench/out/*.json."""
        d = dataclasses.asdict(self)
        d["kind"] = "grid"
        return d


@dataclasses.dataclass
class Target:
    """A goal roost is held to: met, missed, or not measured (met is None)."""

    goal: str
    met: bool | None
    figure: str
    why: str = ""  # for a miss: by how much, and where the time or memory goes


@dataclasses.dataclass
class Result:
    """What a scenario hands to the report."""

    name: str
    title: str
    describes: str
    tables: list[Table | Grid] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)
    targets: list[Target] = dataclasses.field(default_factory=list)
    headlines: list[str] = dataclasses.field(default_factory=list)
    plots: list[str] = dataclasses.field(default_factory=list)
    raw: dict[str, Any] = dataclasses.field(default_factory=dict)
    skipped: str = ""
    wall_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """A plain-data form for bench/out/*.json."""
        return {
            "name": self.name,
            "title": self.title,
            "describes": self.describes,
            "tables": [t.to_json() for t in self.tables],
            "notes": self.notes,
            "targets": [dataclasses.asdict(t) for t in self.targets],
            "headlines": self.headlines,
            "plots": self.plots,
            "raw": self.raw,
            "skipped": self.skipped,
            "wall_s": self.wall_s,
        }


@dataclasses.dataclass
class Ctx:
    """The run's settings and the peers found, handed to every scenario."""

    quick: bool
    reps: int | None
    peers: Any  # bench.peers.Peers
    roost_ok: bool
    roost_reason: str
    workroot: Path
    log: Callable[[str], None]

    def n(self, quick: int, full: int) -> int:
        """Repetitions: --reps if given, else the quick or the full default."""
        if self.reps is not None:
            return self.reps
        return quick if self.quick else full

    def workdir(self, prefix: str) -> Path:
        """A fresh directory under bench/out (never /tmp), removed with the run."""
        self.workroot.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=prefix + "-", dir=self.workroot))


def interleave(subjects: Sequence[str], reps: int, warmup: int = 1) -> Iterator[tuple[int, str]]:
    """Yield (rep, subject) as A B C A B C ...; reps below 0 are warm-up rounds."""
    for rep in range(-warmup, reps):
        for s in subjects:
            yield rep, s


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linear between closest ranks."""
    if not samples:
        return math.nan
    xs = sorted(samples)
    k = (len(xs) - 1) * q / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def fmt(x: float | None, digits: int = 2) -> str:
    """A number for a table cell; '-' when missing."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if x != 0 and abs(x) < 10 ** (-digits):
        return f"{x:.{digits}g}"
    return f"{x:,.{digits}f}"


def rmtree_quiet(path: Path) -> None:
    """Remove a work directory; a failure is reported but never fatal."""
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        print(f"bench: could not remove {path}: {exc}", file=sys.stderr)
