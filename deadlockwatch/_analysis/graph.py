"""The graph library the analysis uses: networkx once it is loaded, and until
then a small stand-in with the same few calls and the same answers.

networkx takes 0.1-0.2 s to import, pulls in some 450 modules (logging among
them), and its import takes locks of the application's: the logging module's
lock and the import system's module locks.  A program that never deadlocks
should not pay for it or see it in ``sys.modules``, and a watcher must never
block on it.  So the first analysis that needs a graph (something is stuck)
starts the import in a thread of its own and goes on with the stand-in;
later analyses use networkx.  A child forked while that import was under way
never tries again (its copies of the import's module locks are held by a
thread it does not have).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

#: How to start the import's thread: given by the watcher (an untracked
#: thread); the analysis itself starts nothing.  Unset, the stand-in is used
#: until `load_networkx`.
start_thread: Callable[[Callable[[], None]], object] | None = None

_networkx: Any = None
_importing = False
_given_up = False


def lib() -> Any:
    """networkx when loaded, else the stand-in (and start loading networkx)."""
    if _networkx is not None:
        return _networkx
    _start_import()
    return _StandIn


def _start_import() -> None:
    global _importing
    if _importing or _given_up or start_thread is None:
        return
    _importing = True
    try:
        start_thread(_import)
    except RuntimeError:  # no new threads (interpreter shutting down)
        _importing = False


def _import() -> None:
    global _importing, _given_up
    try:
        load_networkx()
    except BaseException:
        _given_up = True
    finally:
        _importing = False


def load_networkx() -> None:
    """Import networkx now, in this thread (tests and benchmarks)."""
    global _networkx
    import networkx

    _networkx = networkx


def forget_networkx() -> None:
    """Use the stand-in (tests)."""
    global _networkx
    _networkx = None


def after_fork_in_child() -> None:
    global _importing, _given_up
    if _importing:
        _importing = False
        _given_up = True


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
