"""The analysis: a `Snapshot` in, findings out.  Pure: no threads, no live locks.

Deadlock is decided by reduction, not by spotting a cycle alone: a blocked
thread can still progress if what it waits for has a free unit, or can be
released by a thread that can progress (for owner-bound resources only their
holders count; for a signal, or a lock any thread may release, the threads
that can progress and can reach it, when the capture worked that out, else
any thread that can progress).  Running threads, and threads in a timed
wait, can progress.  The threads left when nothing more reduces are
deadlocked.  A second reduction, counting for a signal reached only through
a global just the threads whose running code names that global, gives the
``probable-deadlock`` warnings.  The
wait-for graph among them (a networkx DiGraph) gives the cycles to report and
the four Coffman conditions of each.

A second pass treats timed waits as if they had no timeout: a cycle of two
threads or more that only that pass finds is a ``timed-cycle`` (it will break
when a timeout expires).  A thread alone in a timed wait on what it holds
itself blocks nobody else and is no warning: that is how timeouts are tested.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING

from deadlockwatch._analysis import graph as _graph
from deadlockwatch._model import (
    DEADLOCK,
    HELD_AT_EXIT,
    LOOP_KIND,
    PROBABLE_DEADLOCK,
    SIGNAL_KIND,
    TIMED_CYCLE,
    Check,
    Conditions,
    CycleStep,
    Finding,
    ReachInfo,
    ResourceInfo,
    Snapshot,
    ThreadInfo,
)

if TYPE_CHECKING:
    from deadlockwatch._analysis.graph import DiGraph


#: How sure the reduction is that a signal nobody in reach can give stays
#: ungiven: CERTAIN counts every thread that can reach it at all; PROBABLE
#: counts, for a signal reachable through a global, only the threads that
#: name that global in the code they run, or have touched the signal.
CERTAIN = "certain"
PROBABLE = "probable"


def stuck_threads(
    snap: Snapshot, timed_waits_progress: bool = True, mode: str = CERTAIN
) -> set[int]:
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
            if t.key not in progress and _can_progress(snap, t, progress, mode):
                progress.add(t.key)
                changed = True
    return {t.key for t in blocked if t.key not in progress}


def _can_progress(snap: Snapshot, t: ThreadInfo, progress: set[int], mode: str) -> bool:
    assert t.wait is not None
    if t.key in snap.wakeable:
        return True
    return _releasable(snap, t.wait.resource, progress, mode)


def _releasable(
    snap: Snapshot, key: int, progress: set[int], mode: str = CERTAIN, depth: int = 0
) -> bool:
    """Can some thread that can progress release (signal, finish) ``key``?"""
    r = snap.resources.get(key)
    if r is None or r.free > 0 or (not r.holders and r.owner_bound and not r.parts):
        return True
    if r.parts:
        if depth > 2:
            return True
        parts = [_releasable(snap, p, progress, mode, depth + 1) for p in r.parts]
        return all(parts) if r.kind == "all" else any(parts)
    if r.owner_bound:
        # Holders missing from the snapshot are threads we know nothing
        # against: they can progress.
        return any(h in progress or h not in snap.threads for h, _ in r.holders)
    if r.reach is None:
        return snap.others_running or bool(progress)
    return bool(_rescuers(snap, r, progress, mode))


def _running_idents(snap: Snapshot, progress: set[int]) -> set[int]:
    return {snap.threads[k].ident for k in progress if snap.threads[k].alive} | set(snap.running)


def pollers(snap: Snapshot, keys: set[int]) -> list[ThreadInfo]:
    """The threads polling in a loop for one of ``keys`` (``while
    t.is_alive(): t.join(0.1)``): they run, but wait for those threads."""
    return [
        t
        for t in snap.threads.values()
        if t.alive
        and t.key not in keys
        and t.wait is not None
        and t.wait.polling
        and any(h in keys for r in waited(snap, t) for h, _ in r.holders)
    ]


def _rescuers(snap: Snapshot, r: ResourceInfo, progress: set[int], mode: str) -> list[int]:
    """The idents of the threads that can progress and could give signal ``r``."""
    reach = r.reach
    assert reach is not None
    running = _running_idents(snap, progress)
    found = [i for i, _ in reach.threads if i in running]
    if reach.rescues:
        found.append(0)  # a signal handler's main thread, a thread starting
    if found:
        return found
    if not reach.complete:
        return sorted(running)
    # An event loop's thread gives an asyncio signal only through its tasks
    # and callbacks, each looked at on its own (`rescues`); through a global,
    # whatever of them can run might (code they call may name it).
    if reach.loop_thread is not None and not (reach.shared and reach.loop_busy and mode == CERTAIN):
        running.discard(reach.loop_thread)
    if reach.shared and mode == CERTAIN:
        return sorted(running)
    if reach.shared:
        # A thread polling it with a timed wait has touched it.
        touched = {
            t.ident
            for t in snap.threads.values()
            if t.wait is not None and t.wait.resource == r.key
        }
        return [i for i, _ in reach.named_by if i in running] + sorted(touched & running)
    return []


def needs_reach(snap: Snapshot) -> list[int]:
    """The signals worth working out who can reach: those that threads wait
    for, untimed, where the threads would be stuck if nobody could give them,
    and stuck in a way that matters (one of them holds something, or waits for
    something owned).  A lone idle waiter that holds nothing blocks nobody."""
    pending = {
        k
        for k, r in snap.resources.items()
        if r.reach is None and not r.owner_bound and r.free == 0 and not r.parts
    }
    if not pending:
        return []
    pessimistic = replace(
        snap,
        resources={
            k: replace(r, reach=ReachInfo()) if k in pending else r
            for k, r in snap.resources.items()
        },
    )
    stuck = stuck_threads(pessimistic, timed_waits_progress=True)
    if not stuck:
        return []
    matters = bool(pollers(snap, stuck)) or any(
        snap.threads[k].held or any(r.owner_bound for r in waited(snap, snap.threads[k]))
        for k in stuck
    )
    if not matters:
        return []
    return sorted({r.key for k in stuck for r in waited(snap, snap.threads[k]) if r.key in pending})


def waited(snap: Snapshot, t: ThreadInfo) -> list[ResourceInfo]:
    """What ``t`` waits for: the resource, and for a wait on several futures, each of them."""
    if t.wait is None or t.wait.resource not in snap.resources:
        return []
    r = snap.resources[t.wait.resource]
    return [r, *(snap.resources[p] for p in r.parts if p in snap.resources)]


def _is_signal(r: ResourceInfo) -> bool:
    """Released by whichever thread gives the signal, not by a holder."""
    return not r.owner_bound and not r.holders


def analyze(snap: Snapshot) -> list[Finding]:
    """Every deadlock and timed cycle in the snapshot, one finding each."""
    stuck = stuck_threads(snap, timed_waits_progress=True)
    findings = _findings(snap, stuck, DEADLOCK)
    probable = stuck_threads(snap, timed_waits_progress=True, mode=PROBABLE) - stuck
    if probable:
        findings.extend(_probable(snap, probable, stuck))
    stuck_untimed = stuck_threads(snap, timed_waits_progress=False)
    if stuck_untimed - stuck:
        for f in _findings(snap, stuck_untimed, TIMED_CYCLE):
            threads = {step.thread for step in f.cycle}
            # A timed wait for a signal (a notify, an item) is polling: only a
            # cycle of owned resources is worth a warning.
            polling = any(_is_signal(snap.resources[s.waits_for]) for s in f.cycle)
            if len(threads) > 1 and not threads <= stuck and not polling:
                findings.append(f)
    return findings


def _probable(snap: Snapshot, probable: set[int], stuck: set[int]) -> list[Finding]:
    """Threads stuck unless a thread that can reach what they wait for only
    through a global, and never touched it, gives it: a warning, with each
    such thread named.  Only where a thread is blocked behind one of them: it
    waits for what another holds (hold and wait), or joins it (a main thread
    in ``join()`` of a producer whose queue nobody drains any more), or polls
    for it in a loop.  An idle waiter alone is no deadlock."""
    out = []
    for f in _findings(snap, probable, PROBABLE_DEADLOCK):
        keys = {t.key for t in f.threads}
        held = {h.resource for k in keys for h in snap.threads[k].held}
        behind = pollers(snap, keys)
        if (
            not f.cycle
            and not behind
            and not any(
                r.key in held or any(h in keys and h != k for h, _ in r.holders)
                for k in keys
                for r in waited(snap, snap.threads[k])
            )
        ):
            continue
        signals = [
            r
            for k in keys
            for r in waited(snap, snap.threads[k])
            if r.reach is not None and r.reach.shared
        ]
        if not signals:
            continue
        r = signals[0]
        assert r.reach is not None
        stopped = stuck | probable
        tasks = {t.ident: t.name for t in snap.threads.values() if t.loop_thread}
        running = sorted(
            {t.ident for t in snap.threads.values() if t.alive and t.key not in stopped}
            | set(snap.running)
        )
        lines = []
        loop = r.reach.loop_thread
        if loop is not None and r.reach.loop_busy:
            name, _ = snap.whereabouts.get(loop, (f"thread-{loop}", ""))
            busy = r.reach.loop_busy
            more = f" and {len(busy) - 3} more" if len(busy) > 3 else ""
            lines.append(
                f"the event loop of {name!r} can still run {'; '.join(busy[:3])}{more}: "
                f"none of them has {r.label} but through {r.reach.shared[0]}, nor names it"
            )
        for ident in running:
            if ident == loop:
                continue
            if ident in tasks:
                name, where = tasks[ident], "a task in a timed wait"
            else:
                name, where = snap.whereabouts.get(ident, (f"thread-{ident}", "somewhere"))
            lines.append(
                f"{name!r} is {where}; it can reach {r.label} only through {r.reach.shared[0]}, "
                "and neither names it in the code it runs nor has touched it"
            )
        polling = ""
        if behind:
            names = ", ".join(repr(t.name) for t in behind)
            polling = f" ({names} polling for them, again and again)"
        cause = (
            f"{f.cause}{polling}; probably: {r.label} can still be reached through "
            f"{r.reach.shared[0]}, but no thread that can run names it or has touched it"
        )
        out.append(replace(f, cause=cause, rescuers=tuple(lines)))
    return out


def held_at_exit(snap: Snapshot, key: int) -> Finding | None:
    """What thread ``key``, which has ended, still holds of the locks only it
    could release (a Lock never handed over, an RLock): they stay held forever."""
    t = snap.threads.get(key)
    if t is None or t.alive:
        return None
    left = [
        snap.resources[h.resource]
        for h in t.held
        if h.resource in snap.resources
        and snap.resources[h.resource].type in ("Lock", "RLock")
        and snap.resources[h.resource].owner_bound
        and any(k == key for k, _ in snap.resources[h.resource].holders)
    ]
    if not left:
        return None
    held = tuple(h for h in t.held if h.resource in {r.key for r in left})
    names = ", ".join(r.label for r in left)
    where = held[0].acquired_at
    at = f" (acquired at {where})" if where is not None else ""
    return Finding(
        kind=HELD_AT_EXIT,
        cycle=(),
        threads=(replace(t, held=held),),
        resources=tuple(left),
        conditions=Conditions(
            Check(True, f"{left[0].label} has no free unit"),
            Check(False, "no thread waits for it yet"),
            Check(True, "only its holder could release it, and that thread has ended"),
            Check(False, "no circular wait"),
        ),
        cause=(
            f"thread {t.name!r} exited holding {names}{at}: any thread that "
            "acquires it will block forever"
        ),
        key=frozenset({key}),
    )


def _thread_graph(snap: Snapshot, stuck: set[int]) -> DiGraph:
    """Stuck thread -> each holder (stuck or dead) of what it waits for."""
    nx = _graph.lib()

    g: DiGraph = nx.DiGraph()
    signals: list[tuple[int, int]] = []
    for key in stuck:
        t = snap.threads[key]
        assert t.wait is not None
        g.add_node(key)
        for r in waited(snap, t):
            for h, _ in r.holders:
                if h in stuck or (h in snap.threads and not snap.threads[h].alive):
                    g.add_edge(key, h, resource=t.wait.resource)
            if _is_signal(r) and not r.parts:
                signals.append((key, r.key))
    # A thread waiting for a signal (a notify, a set, an item): an edge to
    # each stuck thread that could give it (without reach worked out, each
    # stuck thread blocked, directly or not, behind it).
    for key, rk in signals:
        reach = snap.resources[rk].reach
        if reach is not None:
            # The stuck threads that could give it: their own frames reach
            # it, or the code they run names the global it is reached through.
            givers = {i for i, _ in (*reach.threads, *reach.named_by)}
            others = [k for k in stuck if k != key and snap.threads[k].ident in givers]
        else:
            others = [k for k in nx.ancestors(g, key) if k in stuck]
        for other in others:
            if not g.has_edge(key, other):
                g.add_edge(key, other, resource=rk, signal=True)
    return g


def _findings(snap: Snapshot, stuck: set[int], kind: str) -> list[Finding]:
    if not stuck:
        return []
    nx = _graph.lib()

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
    if kind in (DEADLOCK, PROBABLE_DEADLOCK):
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


def _dead_nodes(snap: Snapshot, g: DiGraph) -> set[int]:
    return {n for n in g.nodes if not snap.threads[n].alive}


def _cycle_steps(snap: Snapshot, g: DiGraph, scc: set[int]) -> tuple[CycleStep, ...]:
    """One cycle through the component, as long as a greedy walk makes it,
    starting at the thread that has waited longest; of those waiting as long
    (tasks whose waits one scan of their loop found), at one waiting on a
    signal (its step tells who could give it), then the lowest ident."""
    start = max(
        scc,
        key=lambda k: (
            _blocked_for(snap, k),
            any(r.kind == SIGNAL_KIND for r in waited(snap, snap.threads[k])),
            -snap.threads[k].ident,
        ),
    )
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
        holders = tuple(h for r in waited(snap, snap.threads[key]) for h, _ in r.holders)
        holders = tuple(h for h in dict.fromkeys(holders) if h in snap.threads)
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
        for h, _ in (h for r in waited(snap, snap.threads[k]) for h in r.holders):
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
        for rk in [*(h.resource for h in t.held), *(r.key for r in waited(snap, t))]:
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
    conditions = coffman(snap, cycle, keys, kind)
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


def coffman(
    snap: Snapshot, cycle: tuple[CycleStep, ...], members: list[int], kind: str = DEADLOCK
) -> Conditions:
    """The four Coffman conditions over the cycle (or, without one, over ``members``)."""
    keys = [s.thread for s in cycle] or members
    waits = [snap.threads[k].wait for k in keys]
    res = [
        snap.resources[w.resource] for w in waits if w is not None and w.resource in snap.resources
    ]

    free = [r for r in res if r.free > 0]
    mutual = Check(
        not free,
        f"no resource {'in the cycle' if cycle else 'they wait for'} has a free unit"
        if not free
        else f"{free[0].label} has {free[0].free} free unit(s)",
    )
    hold = _hold_and_wait(snap, cycle, keys)
    # A timeout anywhere in the finding can break it (say a co-holder of a
    # semaphore in the cycle waits with one), not only on the cycle shown.
    timed = [
        k
        for k in dict.fromkeys([*keys, *members])
        if (w := snap.threads[k].wait) is not None and w.timeout is not None
    ]
    shared = [r for r in res if not r.owner_bound]
    signal = [r for r in shared if _is_signal(r) and r.verb]
    #: Signals (and hand-off locks) whose reach was worked out.
    reached = [r for r in shared if r.reach is not None]
    if timed:
        w = snap.threads[timed[0]].wait
        assert w is not None
        how = "polls, again and again, with" if w.polling else "waits with"
        preempt = Check(False, f"{_name(snap, timed[0])} {how} a timeout of {w.timeout:g} s")
    elif reached and kind == DEADLOCK:
        r = reached[0]
        preempt = Check(
            True,
            f"no {_who(snap, keys)} that can run can reach {r.label} to {r.verb or 'release'} it",
        )
    elif reached and reached[0].reach is not None and reached[0].reach.shared:
        r = reached[0]
        assert r.reach is not None
        preempt = Check(
            False,
            f"a thread could still {r.verb or 'release'} {r.label} through {r.reach.shared[0]}",
        )
    elif signal:
        preempt = Check(False, f"any thread could {signal[0].verb} {signal[0].label}")
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
        # Coffman's four conditions are those of a deadlock over resources;
        # a wait for a signal that nothing can give any more (a
        # communication deadlock) needs no cycle.
        circular = Check(
            False,
            f"none needed: the chain ends in a wait that no {_who(snap, keys)} "
            "that can run will ever end",
        )
    return Conditions(mutual, hold, preempt, circular)


def _who(snap: Snapshot, keys: Iterable[int]) -> str:
    """ "thread", or "thread or task" where asyncio tasks are concerned."""
    return "thread or task" if any(snap.threads[k].is_task for k in keys) else "thread"


def _hold_and_wait(snap: Snapshot, cycle: tuple[CycleStep, ...], keys: list[int]) -> Check:
    empty = [k for k in keys if not snap.threads[k].held]
    if not cycle:
        # A chain: one of them waits holding what the others wait for.
        for k in keys:
            mine = {h.resource for h in snap.threads[k].held}
            behind = [
                j
                for j in keys
                if j != k and any(r.key in mine for r in waited(snap, snap.threads[j]))
            ]
            if behind:
                label = next(
                    r.label for r in waited(snap, snap.threads[behind[0]]) if r.key in mine
                )
                return Check(
                    True,
                    f"{_name(snap, k)} waits holding {label}, which {_names(snap, behind)} need(s)",
                )
        if empty:
            return Check(False, f"{_name(snap, empty[0])} holds nothing while it waits")
        return Check(True, "every stuck thread holds a resource while it waits")
    # In a cycle, a thread that holds no lock still holds what the thread
    # before it waits for: its own end (a join), its event loop (a future
    # only that loop completes), a job it runs, or the one way to signal.
    implicit = {k: _implicit_hold(snap, cycle, k) for k in empty}
    unexplained = [k for k in empty if not implicit.get(k)]
    return Check(
        not unexplained,
        "every thread in the cycle holds a resource while it waits"
        if not empty
        else "every thread in the cycle holds what the one before it waits for: "
        + "; ".join(f"{_name(snap, k)} {implicit[k]}" for k in empty)
        if not unexplained
        else f"{_name(snap, unexplained[0])} holds nothing while it waits",
    )


def _on_own_loop(r: ResourceInfo) -> bool:
    """A future that only an event loop completes (its detail names the loop's thread)."""
    return r.kind == "future" and "on the event loop of thread" in r.detail


def _implicit_hold(snap: Snapshot, cycle: tuple[CycleStep, ...], k: int) -> str:
    """What thread ``k`` holds, without a lock, that the step before it waits for
    ("" when the cycle shows nothing)."""
    for s in cycle:
        if s.held_by != k or s.waits_for not in snap.resources:
            continue
        r = snap.resources[s.waits_for]
        if r.kind == "join":
            return f"holds its own end, which {_name(snap, s.thread)} joins"
        if r.kind == LOOP_KIND or _on_own_loop(r):
            return f"runs the event loop that {r.label} needs"
        if r.kind in ("future", "any", "all") and r.owner_bound:
            return f"runs or queues the work {r.label} waits for"
        if r.kind == "import":
            return f"holds the {r.label}"
        if _is_signal(r) and r.verb:
            return f"could {r.verb} {r.label}"
    return ""


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
    text = _starved_pool(snap, keys) or (
        _cycle_cause(snap, cycle) if cycle else _stuck_cause(snap, keys)
    )
    if cycle:
        resources = list(dict.fromkeys(s.waits_for for s in cycle))
        exited = list(
            dict.fromkeys(h for rk in resources for h in _exited_holders(snap, snap.resources[rk]))
        )
        if exited:
            text += f"; {_names(snap, exited)} exited holding a unit"
    if kind == TIMED_CYCLE:
        members = [s.thread for s in cycle] or keys
        timed = [k for k in members if (w := snap.threads[k].wait) and w.timeout is not None]
        if timed and all(snap.threads[k].wait.polling for k in timed):  # type: ignore[union-attr]
            # ``while not lock.acquire(timeout=0.05)``: each timeout ends in
            # a new wait for the same lock, held all the while.
            text += (
                f"; {_names(snap, timed)} time out and wait again, again and again: "
                "only giving up would break the cycle"
            )
        else:
            text += "; a timeout will break the cycle"
    return text


def _cycle_cause(snap: Snapshot, cycle: tuple[CycleStep, ...]) -> str:
    in_cycle = [s.thread for s in cycle]
    resources = list(dict.fromkeys(s.waits_for for s in cycle))
    first = snap.resources[cycle[0].waits_for]
    signal = next((s for s in cycle if _is_signal(snap.resources[s.waits_for])), None)
    if signal is not None:
        r = snap.resources[signal.waits_for]
        me = snap.threads[signal.thread]
        nxt = snap.threads[signal.held_by]
        mine = {h.resource for h in me.held}
        needed = [x for x in waited(snap, nxt) if x.key in mine]
        if not needed:
            # It holds nothing the giver waits for: the giver waits for it
            # through the rest of the cycle (a job it runs, a task it is).
            i = cycle.index(signal)
            between = [cycle[(i + j) % len(cycle)].thread for j in range(2, len(cycle))]
            via = f", through {_names(snap, between)}," if between else ""
            return (
                f"{_name(snap, signal.thread)} waits on {r.label}, which "
                f"{_name(snap, signal.held_by)} could {r.verb or 'release'}, and "
                f"{_name(snap, signal.held_by)} waits{via} for {_name(snap, signal.thread)}"
            )
        return (
            f"{_name(snap, signal.thread)} waits on {r.label} while holding "
            f"{needed[0].label}, which {_name(snap, signal.held_by)} needs before it could "
            f"{r.verb or 'release'} it"
        )
    if all(snap.resources[s.waits_for].kind == "join" for s in cycle):
        if len(cycle) == 2:
            return f"{_names(snap, in_cycle)} await each other"
        return f"{len(cycle)} {_nodes(snap, in_cycle)} each await the next"
    if len(cycle) == 2 and first.kind == "join":
        other = snap.resources[cycle[1].waits_for]
        whose = "pending on the event loop of" if _on_own_loop(other) else "held by"
        return (
            f"{_name(snap, cycle[0].thread)} joins {_name(snap, cycle[0].held_by)}, "
            f"which waits for {other.label} {whose} {_name(snap, cycle[0].thread)}"
        )
    if len(cycle) == 2 and snap.resources[cycle[1].waits_for].kind == "join":
        return _cycle_cause(snap, (cycle[1], cycle[0]))
    imports = [s for s in cycle if snap.resources[s.waits_for].kind == "import"]
    if imports:
        s = imports[0]
        return (
            f"{_name(snap, s.thread)} waits for the {snap.resources[s.waits_for].label}, "
            f"in progress in {_name(snap, s.held_by)}, which is blocked behind it"
        )
    if len(resources) == 1:
        r = first
        holders = [h for h, _ in r.holders if h in snap.threads]
        if len(in_cycle) == 1 and [h for h, _ in r.holders] == in_cycle:
            who = _name(snap, in_cycle[0])
            if _on_own_loop(r):
                return (
                    f"{who} waits for {r.label}, which only its own event loop can complete, "
                    f"and that loop cannot run while {who} waits"
                )
            return f"{who} waits for {r.label}, which it holds itself"
        if not _exited_holders(snap, r) and [h for h, _ in r.holders] == holders:
            return (
                f"every unit of {r.label} is held by {_names(snap, holders)}, "
                "and each waits for another"
            )
        return (
            f"{_names(snap, in_cycle)} wait(s) for another unit of {r.label}, "
            f"held by {_names(snap, holders)}"
        )
    return f"{len(cycle)} {_nodes(snap, in_cycle)} each wait for a resource held by the next"


def _nodes(snap: Snapshot, keys: Iterable[int]) -> str:
    """ "threads", "tasks" (asyncio's), or "threads and tasks"."""
    kinds = {snap.threads[k].is_task for k in keys}
    return "tasks" if kinds == {True} else "threads" if kinds == {False} else "threads and tasks"


def _stuck_cause(snap: Snapshot, keys: list[int]) -> str:
    # Name an exited holder if one is why these threads are stuck.
    for k in keys:
        for r in waited(snap, snap.threads[k]):
            dead = _exited_holders(snap, r)
            if dead:
                gone = snap.threads[dead[0]]
                if gone.lost_at_fork:
                    return (
                        f"{r.label} is held by thread {gone.name!r} of the parent process at "
                        "the fork (only the forking thread survives a fork)"
                    )
                return f"{r.label} is held by thread {gone.name!r}, which exited"
    # The story starts where the chain ends: a member blocked by no other
    # member (one waiting on a signal nobody can give, say), not one merely
    # stuck behind it.
    members = set(keys)
    root = next(
        (
            k
            for k in keys
            if not any(h in members for r in waited(snap, snap.threads[k]) for h, _ in r.holders)
        ),
        keys[0],
    )
    t = snap.threads[root]
    rs = waited(snap, t)
    who = _who(snap, keys)
    if not rs:
        return f"no {who} that can run will ever release what these threads wait for"
    first = rs[0]
    detail = f" ({first.detail})" if first.detail and first.kind != "future" else ""
    if first.kind in ("any", "all"):
        text = f"no {who} that can run will ever complete {first.label} it waits for"
    elif first.verb and first.kind != "lock":
        text = f"no {who} that can run will ever {first.verb} {first.label}{detail}"
    else:
        text = f"no {who} that can run will ever release {first.label}"
    if root == keys[0] or not t.held:
        return text
    mine = {h.resource for h in t.held}
    for k in keys:
        needed = [r for r in waited(snap, snap.threads[k]) if r.key in mine]
        if needed:
            held = needed[0]
            break
    else:
        return text
    behind = [k for k in keys if any(r.key == held.key for r in waited(snap, snap.threads[k]))]
    return (
        f"{text}, for which {_name(snap, root)} waits holding {held.label}, "
        f"which {_names(snap, behind)} need(s)"
    )


def _starved_pool(snap: Snapshot, keys: list[int]) -> str | None:
    """Every worker of an executor is stuck, and a future they (or others)
    wait for is queued behind them."""
    stuck = set(keys)
    for k in keys:
        for r in waited(snap, snap.threads[k]):
            if r.kind != "future" or not r.group or not r.detail.startswith("pending"):
                continue
            workers = [h for h, _ in r.holders]
            if not workers or not r.owner_bound or not all(h in stuck for h in workers):
                continue
            behind = all(
                any(
                    w.kind == "future" and w.group == r.group for w in waited(snap, snap.threads[h])
                )
                for h in workers
            )
            n = len(workers)
            if behind and n == 1:
                return f"the only worker of {r.group} waits on a future queued behind it"
            if behind:
                return f"all {n} workers of {r.group} wait on futures queued behind them"
            return (
                f"every worker of {r.group} is blocked, so {r.label} queued behind them never runs"
            )
    return None
