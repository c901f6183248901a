"""The analysis: a `Snapshot` in, findings out.  Pure: no threads, no live locks.

Deadlock is decided by reduction, not by spotting a cycle alone: a blocked
thread can still progress if what it waits for has a free unit, or can be
released by a thread that can progress (for owner-bound resources only their
holders count; for resources any thread may release, any thread that can
progress counts).  Running threads, and threads in a timed wait, can
progress.  The threads left when nothing more reduces are deadlocked.  The
wait-for graph among them (a networkx DiGraph) gives the cycles to report and
the four Coffman conditions of each.

A second pass treats timed waits as if they had no timeout: a cycle of two
threads or more that only that pass finds is a ``timed-cycle`` (it will break
when a timeout expires).  A thread alone in a timed wait on what it holds
itself blocks nobody else and is no warning: that is how timeouts are tested.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from ._model import (
    DEADLOCK,
    TIMED_CYCLE,
    Check,
    Conditions,
    CycleStep,
    Finding,
    ResourceInfo,
    Snapshot,
    ThreadInfo,
)

if TYPE_CHECKING:
    import networkx as nx


def stuck_threads(snap: Snapshot, timed_waits_progress: bool = True) -> set[int]:
    """The keys of the blocked threads that can never progress (the fixpoint)."""
    progress: set[int] = set()
    blocked: list[ThreadInfo] = []
    for t in snap.threads.values():
        if not t.alive:
            continue
        if t.wait is None or (timed_waits_progress and t.wait.timeout is not None):
            progress.add(t.key)
        else:
            blocked.append(t)
    changed = True
    while changed:
        changed = False
        for t in blocked:
            if t.key not in progress and _can_progress(snap, t, progress):
                progress.add(t.key)
                changed = True
    return {t.key for t in blocked if t.key not in progress}


def _can_progress(snap: Snapshot, t: ThreadInfo, progress: set[int]) -> bool:
    assert t.wait is not None
    r = snap.resources.get(t.wait.resource)
    if r is None or r.free > 0 or (not r.holders and r.owner_bound):
        return True
    if r.owner_bound:
        return any(h in progress or h not in snap.threads for h, _ in r.holders)
    return snap.others_running or bool(progress)


def analyze(snap: Snapshot) -> list[Finding]:
    """Every deadlock and timed cycle in the snapshot, one finding each."""
    stuck = stuck_threads(snap, timed_waits_progress=True)
    findings = _findings(snap, stuck, DEADLOCK)
    stuck_untimed = stuck_threads(snap, timed_waits_progress=False)
    if stuck_untimed - stuck:
        for f in _findings(snap, stuck_untimed, TIMED_CYCLE):
            threads = {step.thread for step in f.cycle}
            if len(threads) > 1 and not threads <= stuck:
                findings.append(f)
    return findings


def _thread_graph(snap: Snapshot, stuck: set[int]) -> nx.DiGraph:
    """Stuck thread -> each holder (stuck or dead) of what it waits for."""
    import networkx as nx

    g = nx.DiGraph()
    for key in stuck:
        t = snap.threads[key]
        assert t.wait is not None
        g.add_node(key)
        r = snap.resources.get(t.wait.resource)
        for h, _ in r.holders if r is not None else ():
            if h in stuck or (h in snap.threads and not snap.threads[h].alive):
                g.add_edge(key, h, resource=t.wait.resource)
    return g


def _findings(snap: Snapshot, stuck: set[int], kind: str) -> list[Finding]:
    if not stuck:
        return []
    import networkx as nx

    g = _thread_graph(snap, stuck)
    # A cycle is reported as such only when it is closed: no thread of it
    # waits for a resource that a stuck thread outside it also holds (a unit of
    # a semaphore, say).  Otherwise the cycle is stuck only because of what
    # lies beyond it, and its threads are reported as stuck behind that.
    sccs = [
        s
        for s in nx.strongly_connected_components(g)
        if (len(s) > 1 or any(g.has_edge(n, n) for n in s))
        and all(v in s or v not in stuck for u in s for v in g.successors(u))
    ]
    sccs.sort(key=lambda s: min(snap.threads[k].ident for k in s))
    in_cycles = {n for s in sccs for n in s}
    claimed: set[int] = set()
    findings: list[Finding] = []
    for scc in sccs:
        cycle = _cycle_steps(snap, g, scc)
        # Threads stuck behind this cycle (they reach it in the graph).
        behind = set(nx.ancestors(g, next(iter(scc)))) - scc - claimed - in_cycles
        claimed |= scc | behind
        findings.append(
            _finding(snap, kind, cycle, [*_by_ident(snap, scc), *_by_ident(snap, behind)])
        )
    if kind == DEADLOCK:
        rest = stuck - claimed
        for comp in sorted(
            nx.weakly_connected_components(g.subgraph(rest | _dead_nodes(snap, g))),
            key=lambda c: min(snap.threads[k].ident for k in c),
        ):
            members = _by_ident(snap, (k for k in comp if k in rest))
            if members:
                findings.append(_finding(snap, kind, (), members))
    return findings


def _by_ident(snap: Snapshot, keys: Iterable[int]) -> list[int]:
    return sorted(keys, key=lambda k: (snap.threads[k].ident, k))


def _dead_nodes(snap: Snapshot, g: nx.DiGraph) -> set[int]:
    return {n for n in g.nodes if not snap.threads[n].alive}


def _cycle_steps(snap: Snapshot, g: nx.DiGraph, scc: set[int]) -> tuple[CycleStep, ...]:
    """One cycle through the component, as long as a greedy walk makes it,
    starting at the thread that has waited longest."""
    start = max(scc, key=lambda k: (_blocked_for(snap, k), -snap.threads[k].ident))
    order = [start]
    seen = {start}
    node = start
    while True:
        succ = sorted(
            (s for s in g.successors(node) if s in scc),
            key=lambda k: snap.threads[k].ident,
        )
        nxt = next((s for s in succ if s not in seen), None)
        if nxt is None:
            break
        order.append(nxt)
        seen.add(nxt)
        node = nxt
    # Close the walk at the first node of it that the last one waits on.
    closing = next(i for i, n in enumerate(order) if g.has_edge(order[-1], n))
    order = order[closing:]
    steps = []
    for i, key in enumerate(order):
        nxt = order[(i + 1) % len(order)]
        res = g.edges[key, nxt]["resource"]
        holders = tuple(h for h, _ in snap.resources[res].holders if h in snap.threads)
        steps.append(CycleStep(thread=key, waits_for=res, held_by=nxt, holders=holders))
    return tuple(steps)


def _blocked_for(snap: Snapshot, key: int) -> float:
    w = snap.threads[key].wait
    return w.blocked_for if w is not None else 0.0


def _finding(
    snap: Snapshot, kind: str, cycle: tuple[CycleStep, ...], members: Iterable[int]
) -> Finding:
    keys = list(dict.fromkeys([*(s.thread for s in cycle), *members]))
    # Exited threads holding what the stuck ones wait for are part of the story.
    extra_threads: list[int] = []
    for k in keys:
        w = snap.threads[k].wait
        r = snap.resources.get(w.resource) if w is not None else None
        for h, _ in r.holders if r is not None else ():
            if (
                h not in keys
                and h not in extra_threads
                and h in snap.threads
                and not snap.threads[h].alive
            ):
                extra_threads.append(h)
    involved_resources: dict[int, ResourceInfo] = {}
    for k in [*keys, *extra_threads]:
        t = snap.threads[k]
        for rk in [*(h.resource for h in t.held), *([t.wait.resource] if t.wait else [])]:
            r = snap.resources.get(rk)
            if r is not None and rk not in involved_resources:
                involved_resources[rk] = r
    threads = tuple(snap.threads[k] for k in [*keys, *extra_threads])
    cycle_keys = [s.thread for s in cycle] if cycle else keys
    key = frozenset(
        snap.threads[k].wait.token  # type: ignore[union-attr]
        for k in cycle_keys
        if snap.threads[k].wait is not None
    )
    conditions = coffman(snap, cycle, keys)
    return Finding(
        kind=kind,
        cycle=cycle,
        threads=threads,
        resources=tuple(involved_resources.values()),
        conditions=conditions,
        cause=_cause(snap, kind, cycle, keys),
        key=key,
    )


def _name(snap: Snapshot, key: int) -> str:
    return repr(snap.threads[key].name)


def coffman(snap: Snapshot, cycle: tuple[CycleStep, ...], members: list[int]) -> Conditions:
    """The four Coffman conditions over the cycle (or, without one, over ``members``)."""
    keys = [s.thread for s in cycle] or members
    waits = [snap.threads[k].wait for k in keys]
    res = [
        snap.resources[w.resource]
        for w in waits
        if w is not None and w.resource in snap.resources
    ]

    free = [r for r in res if r.free > 0]
    mutual = Check(
        not free,
        "no resource in the cycle has a free unit"
        if not free
        else f"{free[0].label} has {free[0].free} free unit(s)",
    )
    empty = [k for k in keys if not snap.threads[k].held]
    hold = Check(
        not empty,
        "every thread in the cycle holds a resource while it waits"
        if not empty
        else f"{_name(snap, empty[0])} holds nothing while it waits",
    )
    # A timeout anywhere in the finding can break it (say a co-holder of a
    # semaphore in the cycle waits with one), not only on the cycle shown.
    timed = [
        k
        for k in dict.fromkeys([*keys, *members])
        if (w := snap.threads[k].wait) is not None and w.timeout is not None
    ]
    shared = [r for r in res if not r.owner_bound]
    if timed:
        w = snap.threads[timed[0]].wait
        assert w is not None
        preempt = Check(False, f"{_name(snap, timed[0])} waits with a timeout of {w.timeout:g} s")
    elif shared:
        preempt = Check(
            False, f"{shared[0].label} may be released by a thread that does not hold it"
        )
    else:
        preempt = Check(
            True, "no wait has a timeout, and only their holders can release these resources"
        )
    if cycle:
        path = " -> ".join(_name(snap, s.thread) for s in cycle)
        circular = Check(True, f"{path} -> {_name(snap, cycle[0].thread)}")
    else:
        circular = Check(False, "no circular wait among the stuck threads")
    return Conditions(mutual, hold, preempt, circular)


def _names(snap: Snapshot, keys: Iterable[int]) -> str:
    names = [_name(snap, k) for k in keys]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _exited_holders(snap: Snapshot, r: ResourceInfo | None) -> list[int]:
    return [
        h
        for h, _ in (r.holders if r is not None else ())
        if h in snap.threads and not snap.threads[h].alive
    ]


def _cause(snap: Snapshot, kind: str, cycle: tuple[CycleStep, ...], keys: list[int]) -> str:
    if cycle:
        in_cycle = [s.thread for s in cycle]
        resources = list(dict.fromkeys(s.waits_for for s in cycle))
        exited = list(
            dict.fromkeys(h for rk in resources for h in _exited_holders(snap, snap.resources[rk]))
        )
        if len(resources) == 1:
            r = snap.resources[resources[0]]
            holders = [h for h, _ in r.holders if h in snap.threads]
            if len(in_cycle) == 1 and [h for h, _ in r.holders] == in_cycle:
                text = f"{_name(snap, in_cycle[0])} waits for {r.label}, which it holds itself"
            elif not exited and [h for h, _ in r.holders] == holders:
                text = (
                    f"every unit of {r.label} is held by {_names(snap, holders)}, "
                    "and each waits for another"
                )
            else:
                text = (
                    f"{_names(snap, in_cycle)} wait(s) for another unit of {r.label}, "
                    f"held by {_names(snap, holders)}"
                )
        else:
            text = f"{len(cycle)} threads each wait for a resource held by the next"
        if exited:
            text += f"; {_names(snap, exited)} exited holding a unit"
        if kind == TIMED_CYCLE:
            text += "; a timeout will break the cycle"
        return text
    # Name an exited holder if one is why these threads are stuck.
    for k in keys:
        w = snap.threads[k].wait
        waited = snap.resources.get(w.resource) if w is not None else None
        dead = _exited_holders(snap, waited)
        if waited is not None and dead:
            name = snap.threads[dead[0]].name
            return f"{waited.label} is held by thread {name!r}, which exited"
    t = snap.threads[keys[0]]
    assert t.wait is not None
    first = snap.resources.get(t.wait.resource)
    label = first.label if first is not None else "a resource"
    return f"no thread that can run will ever release {label}"
