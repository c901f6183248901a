"""The graph library the analysis uses: networkx, once the watcher has
imported it, and until then a small stand-in with the same few calls.

networkx takes 0.1-0.2 s to import, and its import takes locks of the
application's (the logging module's lock, and the import system's module
locks).  So it is imported by the watcher in the background, never on the
way to a report: a deadlock found meanwhile (or in a child forked while the
import was under way, whose module locks the child can never take) is
analysed with the stand-in, which gives the same answers.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

_networkx: Any = None


def load_networkx() -> None:
    """Import networkx (in the watcher, in the background) and use it from now on."""
    global _networkx
    import networkx

    _networkx = networkx


def forget_networkx() -> None:
    """Use the stand-in (tests; a child forked during the import)."""
    global _networkx
    _networkx = None


def lib() -> Any:
    """networkx when loaded, else this module (same names, same answers)."""
    return _networkx if _networkx is not None else _StandIn


class DiGraph:
    """The part of ``networkx.DiGraph`` the analysis uses."""

    def __init__(self) -> None:
        self._succ: dict[Any, dict[Any, dict[str, Any]]] = {}
        self._pred: dict[Any, set[Any]] = {}
        self.edges = _Edges(self._succ)

    @property
    def nodes(self) -> list[Any]:
        return list(self._succ)

    def add_node(self, n: Any) -> None:
        self._succ.setdefault(n, {})
        self._pred.setdefault(n, set())

    def add_edge(self, u: Any, v: Any, **attrs: Any) -> None:
        self.add_node(u)
        self.add_node(v)
        self._succ[u].setdefault(v, {}).update(attrs)
        self._pred[v].add(u)

    def has_edge(self, u: Any, v: Any) -> bool:
        return v in self._succ.get(u, {})

    def successors(self, n: Any) -> Iterator[Any]:
        return iter(list(self._succ[n]))

    def predecessors(self, n: Any) -> Iterator[Any]:
        return iter(list(self._pred[n]))

    def subgraph(self, nodes: Iterable[Any]) -> DiGraph:
        keep = set(nodes)
        g = DiGraph()
        for u in self._succ:
            if u in keep:
                g.add_node(u)
                for v, attrs in self._succ[u].items():
                    if v in keep:
                        g.add_edge(u, v, **attrs)
        return g


class _Edges:
    def __init__(self, succ: dict[Any, dict[Any, dict[str, Any]]]) -> None:
        self._succ = succ

    def __getitem__(self, edge: tuple[Any, Any]) -> dict[str, Any]:
        return self._succ[edge[0]][edge[1]]


def ancestors(g: DiGraph, source: Any) -> set[Any]:
    seen: set[Any] = set()
    todo = [source]
    while todo:
        for p in g.predecessors(todo.pop()):
            if p not in seen:
                seen.add(p)
                todo.append(p)
    seen.discard(source)
    return seen


def strongly_connected_components(g: DiGraph) -> Iterator[set[Any]]:
    """Tarjan's algorithm, iterative (no recursion limit)."""
    index: dict[Any, int] = {}
    low: dict[Any, int] = {}
    on_stack: set[Any] = set()
    stack: list[Any] = []
    out: list[set[Any]] = []
    counter = 0
    for root in g.nodes:
        if root in index:
            continue
        work: list[tuple[Any, Iterator[Any]]] = [(root, g.successors(root))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, it = work[-1]
            advanced = False
            for nxt in it:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, g.successors(nxt)))
                    advanced = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component: set[Any] = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                out.append(component)
    return iter(out)


def weakly_connected_components(g: DiGraph) -> Iterator[set[Any]]:
    seen: set[Any] = set()
    out: list[set[Any]] = []
    for root in g.nodes:
        if root in seen:
            continue
        component = {root}
        todo = [root]
        while todo:
            n = todo.pop()
            for m in [*g.successors(n), *g.predecessors(n)]:
                if m not in component:
                    component.add(m)
                    todo.append(m)
        seen |= component
        out.append(component)
    return iter(out)


class _StandIn:
    """The namespace `lib()` returns while networkx is not loaded."""

    DiGraph = DiGraph
    ancestors = staticmethod(ancestors)
    strongly_connected_components = staticmethod(strongly_connected_components)
    weakly_connected_components = staticmethod(weakly_connected_components)
