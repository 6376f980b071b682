"""The house rules of src/roost, read from its imports (docs/DESIGN.md, "Layers").

Each package has a rank; a module may import, at run time, only its own package
and packages of a lower rank. Imports under TYPE_CHECKING never run and are
exempt. Every function-level import says why it is lazy, in the project's
dialect, and no import, lazy or not, closes a circle.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import NamedTuple

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "roost"

# Lowest first. A module may import its own package and anything ranked below it.
RANKS = {
    "roost": 0,            # the package face: the version, nothing else
    "roost.core": 0,       # pure: no OS, no I/O (imports only the standard library's pure parts)
    "roost.kernel": 1,     # the OS edge: every system call roost makes
    "roost.early": 1,
    "roost.importers": 2,  # other supervisors' configurations, as roost service files
    "roost.tracking": 2,
    "roost.config": 3,     # above the importers: a directory's systemd units go through theirs
    "roost.supervise": 4,
    "roost.control": 5,
    "roost.up": 6,         # composition root of `roost up`, reused by the other roles
    "roost.system": 7,     # `roost init`
    "roost.container": 7,  # `roost run`
    "roost.cli_show": 7,   # what the client prints, beneath the command line that prints it
    "roost.cli_analyze": 7,  # the picture of a start, likewise
    "roost.cli_parser": 7,  # the command line's grammar, beneath the command line
    "roost.cli_complete": 7,  # completion scripts written from that grammar
    "roost.cli": 8,
    "roost.__main__": 9,   # the entry point: picks the role
}

# What the core may take from the standard library: nothing that reaches the OS.
# `_signal` only for the numbers and names of signals: the core sends none.
CORE_STDLIB = {"__future__", "collections", "collections.abc", "heapq", "typing", "math",
               "dataclasses", "enum", "functools", "itertools", "_signal"}

LAZY = re.compile(r"#\s*noqa: (?:[A-Z]+[0-9]+, )*PLC0415 - lazy \((start-up|memory|child)\): \S")


class Import(NamedTuple):
    """One import statement: where it is, what it names, how it runs."""

    module: str
    target: str
    line: int
    lazy: bool
    typing_only: bool
    text: str

    def __repr__(self) -> str:
        return f"{self.module}:{self.line} imports {self.target}"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[Import]:
    source = path.read_text()
    lines = source.splitlines()
    tree = ast.parse(source)
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[Import] = []

    def visit(node: ast.AST, in_function: bool, typing_only: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and isinstance(child.test, ast.Name) \
                    and child.test.id == "TYPE_CHECKING":
                for stmt in child.body:
                    visit_stmt(stmt, in_function, True)
                for stmt in child.orelse:
                    visit_stmt(stmt, in_function, typing_only)
                continue
            visit_stmt(child, in_function, typing_only)

    def visit_stmt(child: ast.AST, in_function: bool, typing_only: bool) -> None:
        if isinstance(child, ast.Import | ast.ImportFrom):
            names: list[str] = []
            if isinstance(child, ast.Import):
                names = [a.name for a in child.names]
            else:
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - child.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                names = [base]
                # `from roost.kernel import linux` imports the module roost.kernel.linux.
                for alias in child.names:
                    candidate = f"{base}.{alias.name}"
                    if (SRC.parent / Path(*candidate.split("."))).with_suffix(".py").exists() \
                            or (SRC.parent / Path(*candidate.split("."))).is_dir():
                        names.append(candidate)
            text = lines[child.lineno - 1]
            for name in names:
                found.append(Import(module, name, child.lineno, in_function, typing_only, text))
            return
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            visit(child, True, typing_only)
            return
        visit(child, in_function, typing_only)

    visit(tree, False, False)
    return found


MODULES = sorted(SRC.rglob("*.py"))
ALL = [imp for path in MODULES for imp in _imports(path)]


def _rank(module: str) -> tuple[str, int]:
    """The ranked unit a module belongs to, and its rank."""
    best = ""
    for unit in RANKS:
        if (module == unit or module.startswith(unit + ".")) and len(unit) > len(best):
            best = unit
    assert best, f"{module} has no rank: give its package one in RANKS"
    return best, RANKS[best]


def test_every_module_was_read() -> None:
    # The walk is real: it finds the core, the edge and the roles, and their imports.
    names = {_module_name(p) for p in MODULES}
    assert {"roost.core.machine", "roost.core.order", "roost.kernel.loop",
            "roost.supervise.supervisor", "roost.up", "roost.system.boot",
            "roost.container.run"} <= names
    assert any(i.target == "roost.core.machine" for i in ALL)
    assert any(i.lazy for i in ALL)


def test_every_module_has_a_rank() -> None:
    for path in MODULES:
        _rank(_module_name(path))


def test_the_core_imports_only_the_core_and_pure_stdlib() -> None:
    bad = [imp for imp in ALL if imp.module.startswith("roost.core") and not imp.typing_only
           and not imp.target.startswith("roost.core") and imp.target not in CORE_STDLIB]
    assert not bad, bad


def test_no_import_runs_up_a_layer() -> None:
    bad = []
    for imp in ALL:
        if imp.typing_only or not imp.target.startswith("roost"):
            continue
        source_unit, source_rank = _rank(imp.module)
        target_unit, target_rank = _rank(imp.target)
        if source_unit == target_unit or target_unit == "roost":
            continue
        if target_rank >= source_rank:
            bad.append(f"{imp} ({source_unit} is rank {source_rank}, {target_unit} is rank "
                       f"{target_rank})")
    assert not bad, "\n".join(bad)


def test_every_lazy_import_says_why() -> None:
    bad = [f"{imp}: {imp.text.strip()}" for imp in ALL
           if imp.lazy and not imp.typing_only and not LAZY.search(imp.text)]
    assert not bad, ("a function-level import needs "
                     "`# noqa: PLC0415 - lazy (start-up|memory|child): why`:\n" + "\n".join(bad))


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in edges:
                    continue
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))
    return groups


def test_no_import_circle() -> None:
    edges: dict[str, set[str]] = {_module_name(p): set() for p in MODULES}
    for imp in ALL:
        if imp.typing_only or imp.target not in edges:
            continue
        # A package's face is imported with every module inside it; that is no circle.
        if imp.module.startswith(imp.target + "."):
            continue
        edges[imp.module].add(imp.target)
    assert _cycles(edges) == []


def test_the_cycle_finder_finds_cycles() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_no_file_is_a_house_of_its_own(path: Path) -> None:
    # A file is a room with one purpose: past this size it has more than one.
    assert len(path.read_text().splitlines()) <= 450


def test_the_source_map_names_every_file_and_only_those() -> None:
    design = (SRC.parents[1] / "docs" / "DESIGN.md").read_text()
    mapped = set(re.findall(r"^- `([a-z_/]+\.py)`:", design, re.MULTILINE))
    files = {str(p.relative_to(SRC)) for p in MODULES if p.name != "__init__.py"
             or p.parent.name == "tracking"}
    assert files - mapped == set(), "files missing from docs/DESIGN.md's source map"
    assert mapped - files == set(), "docs/DESIGN.md's source map names files that do not exist"
