"""The dependency graph of services: cycles, and the order of start and stop.

An edge `a -> b` means a is ordered after b (a requires or wants b). Starting
walks edges from the leaves up; stopping walks them the other way.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping


def find_cycle(edges: Mapping[str, Iterable[str]]) -> list[str] | None:
    """Return one dependency cycle as [a, b, ..., a], or None if the graph has none."""
    white, grey, black = 0, 1, 2
    colour = dict.fromkeys(edges, white)
    for root in sorted(edges):
        if colour[root] != white:
            continue
        path = [root]
        stack = [iter(sorted(edges[root]))]
        colour[root] = grey
        while stack:
            advanced = False
            for nxt in stack[-1]:
                state = colour.get(nxt, black)
                if state == grey:
                    return [*path[path.index(nxt) :], nxt]
                if state == white:
                    colour[nxt] = grey
                    path.append(nxt)
                    stack.append(iter(sorted(edges[nxt])))
                    advanced = True
                    break
            if not advanced:
                colour[path.pop()] = black
                stack.pop()
    return None


def dependents(edges: Mapping[str, Iterable[str]]) -> dict[str, set[str]]:
    """Invert the graph: for each service, the services ordered after it."""
    inverse: dict[str, set[str]] = {name: set() for name in edges}
    for name, deps in edges.items():
        for dep in deps:
            inverse.setdefault(dep, set()).add(name)
    return inverse


def closure(start: Iterable[str], edges: Mapping[str, Iterable[str]]) -> set[str]:
    """Every service reachable from `start` along `edges`, `start` included."""
    seen: set[str] = set()
    todo = list(start)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(edges.get(name, ()))
    return seen


def layers(edges: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Group services into start layers: each layer only depends on earlier ones."""
    remaining = {name: set(deps) & set(edges) for name, deps in edges.items()}
    result: list[list[str]] = []
    while remaining:
        ready = sorted(name for name, deps in remaining.items() if not deps)
        if not ready:
            raise ValueError("dependency cycle among: " + ", ".join(sorted(remaining)))
        result.append(ready)
        for name in ready:
            del remaining[name]
        for deps in remaining.values():
            deps.difference_update(ready)
    return result
