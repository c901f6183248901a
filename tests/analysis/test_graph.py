"""The stand-in graph library gives networkx's answers (the analysis uses it
until the watcher has imported networkx)."""

from __future__ import annotations

import networkx as nx
from hypothesis import given, settings
from hypothesis import strategies as st

from deadlockwatch._analysis import graph as _graph

edges = st.lists(st.tuples(st.integers(0, 12), st.integers(0, 12)), max_size=40)


def _both(pairs: list[tuple[int, int]]) -> tuple[_graph.DiGraph, nx.DiGraph]:
    mine, theirs = _graph.DiGraph(), nx.DiGraph()
    for n in range(13):
        if n % 3 == 0:
            mine.add_node(n)
            theirs.add_node(n)
    for u, v in pairs:
        mine.add_edge(u, v, resource=u * 100 + v)
        theirs.add_edge(u, v, resource=u * 100 + v)
    return mine, theirs


def _sets(components: object) -> set[frozenset[int]]:
    return {frozenset(c) for c in components}  # type: ignore[attr-defined]


@settings(max_examples=300, deadline=None)
@given(edges)
def test_components_and_ancestors_match_networkx(pairs: list[tuple[int, int]]) -> None:
    mine, theirs = _both(pairs)
    assert set(mine.nodes) == set(theirs.nodes)
    assert _sets(_graph.strongly_connected_components(mine)) == _sets(
        nx.strongly_connected_components(theirs)
    )
    assert _sets(_graph.weakly_connected_components(mine)) == _sets(
        nx.weakly_connected_components(theirs)
    )
    for n in theirs.nodes:
        assert _graph.ancestors(mine, n) == nx.ancestors(theirs, n)
        assert set(mine.successors(n)) == set(theirs.successors(n))
    for u, v in pairs:
        assert mine.has_edge(u, v) and mine.edges[u, v] == theirs.edges[u, v]
    keep = [n for n in theirs.nodes if n % 2]
    assert _sets(_graph.weakly_connected_components(mine.subgraph(keep))) == _sets(
        nx.weakly_connected_components(theirs.subgraph(keep))
    )


def test_a_long_chain_needs_no_recursion() -> None:
    g = _graph.DiGraph()
    for i in range(5000):
        g.add_edge(i, i + 1)
    g.add_edge(5000, 0)
    assert [len(c) for c in _graph.strongly_connected_components(g)] == [5001]


def test_lib_is_the_stand_in_until_networkx_is_loaded() -> None:
    _graph.forget_networkx()
    try:
        assert _graph.lib().DiGraph is _graph.DiGraph
        _graph.load_networkx()
        assert _graph.lib() is nx
    finally:
        _graph.load_networkx()
