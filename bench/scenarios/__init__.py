"""Benchmark scenarios, one module each, found by name.

A scenario module defines:
  NAME     short name for --only (e.g. "startup")
  TITLE    heading in the report
  ORDER    position in the report (ascending)
  run(ctx: bench.core.Ctx) -> bench.core.Result
and its module docstring says what it measures and how (it goes into the report).
A scenario that is planned but not written yet sets PLANNED = "why not yet"
instead of defining run(); the report lists it as not measured.  Dropping a new
module in this package is all it takes to add a scenario.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType


def discover() -> list[ModuleType]:
    """Every scenario module of this package, in report order."""
    mods = []
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(mod, "NAME"):
            mods.append(mod)
    return sorted(mods, key=lambda m: (getattr(m, "ORDER", 1000), m.NAME))
