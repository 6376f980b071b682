"""The dependency graph: cycles found and named in full, start layers, closures."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from roost.core import graph


def assert_is_cycle(cycle: list[str], edges: dict[str, list[str]]) -> None:
    assert cycle[0] == cycle[-1]
    assert len(set(cycle[:-1])) == len(cycle) - 1, "a cycle visits each service once"
    for a, b in itertools.pairwise(cycle):
        assert b in edges[a], f"{a} -> {b} is not an edge"


def test_no_cycle() -> None:
    assert graph.find_cycle({}) is None
    assert graph.find_cycle({"a": []}) is None
    assert graph.find_cycle({"a": ["b"], "b": ["c"], "c": []}) is None
    # A diamond is not a cycle.
    assert graph.find_cycle({"a": ["b", "c"], "b": ["d"], "c": ["d"], "d": []}) is None


def test_self_loop() -> None:
    assert graph.find_cycle({"a": ["a"]}) == ["a", "a"]


def test_cycle_named_in_full() -> None:
    edges = {"a": ["b"], "b": ["c"], "c": ["a"]}
    assert graph.find_cycle(edges) == ["a", "b", "c", "a"]


def test_cycle_below_the_root_is_reported_without_the_tail() -> None:
    # x leads into the cycle but is not part of it.
    edges = {"x": ["b"], "b": ["c"], "c": ["d"], "d": ["b"]}
    assert graph.find_cycle(edges) == ["b", "c", "d", "b"]


def test_unknown_names_are_not_followed() -> None:
    assert graph.find_cycle({"a": ["ghost"]}) is None
    assert graph.layers({"a": ["ghost"], "b": ["a"]}) == [["a"], ["b"]]


def test_dependents() -> None:
    inverse = graph.dependents({"web": ["db", "cache"], "worker": ["db"], "db": [],
                                "cache": []})
    assert inverse == {"web": set(), "worker": set(), "db": {"web", "worker"},
                       "cache": {"web"}}


def test_closure() -> None:
    edges = {"web": ["db", "migrate"], "migrate": ["db"], "db": [], "other": []}
    assert graph.closure(["web"], edges) == {"web", "db", "migrate"}
    assert graph.closure(["db"], edges) == {"db"}
    assert graph.closure([], edges) == set()
    # Cycles do not loop forever.
    assert graph.closure(["a"], {"a": ["b"], "b": ["a"]}) == {"a", "b"}


def test_layers() -> None:
    edges = {"web": ["db", "migrate"], "migrate": ["db"], "db": [], "worker": ["web"],
             "lone": []}
    assert graph.layers(edges) == [["db", "lone"], ["migrate"], ["web"], ["worker"]]


def test_layers_refuse_a_cycle() -> None:
    with pytest.raises(ValueError, match="dependency cycle among: a, b"):
        graph.layers({"a": ["b"], "b": ["a"], "c": []})


names = st.sampled_from([f"s{i}" for i in range(8)])
graphs = st.dictionaries(names, st.lists(names, max_size=4), max_size=8)


@st.composite
def dags(draw: st.DrawFn) -> dict[str, list[str]]:
    """A random acyclic graph: each node depends only on nodes with a smaller index."""
    count = draw(st.integers(0, 10))
    nodes = [f"n{i}" for i in range(count)]
    return {node: draw(st.lists(st.sampled_from(nodes[:i]), max_size=3)) if i else []
            for i, node in enumerate(nodes)}


@given(dags())
def test_dag_layers_respect_every_edge(edges: dict[str, list[str]]) -> None:
    assert graph.find_cycle(edges) is None
    layers = graph.layers(edges)
    position = {name: i for i, layer in enumerate(layers) for name in layer}
    assert sorted(position) == sorted(edges)
    for name, deps in edges.items():
        for dep in deps:
            assert position[dep] < position[name]
    # Each layer is as early as it can be: something in the previous layer holds it back.
    for name, index in position.items():
        if index:
            assert any(position[d] == index - 1 for d in edges[name])


@given(graphs)
def test_cycle_iff_no_layers(edges: dict[str, list[str]]) -> None:
    # Edges to names outside the graph are ignored by both.
    cycle = graph.find_cycle(edges)
    try:
        graph.layers(edges)
    except ValueError:
        assert cycle is not None
        assert_is_cycle(cycle, edges)
    else:
        assert cycle is None


@given(graphs, st.lists(names, max_size=3))
def test_closure_is_closed(edges: dict[str, list[str]], start: list[str]) -> None:
    found = graph.closure(start, edges)
    assert set(start) <= found
    for name in found:
        assert set(edges.get(name, ())) <= found
