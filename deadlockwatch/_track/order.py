"""Potential deadlocks: the lock-order graph and its inversions.

When a thread makes a blocking, untimed acquire of lock B while its most
recently taken lock is A, the order A -> B is learned (lockdep's rule:
earlier holds reach B through A, so one edge per acquire suffices).  A known
order costs the acquiring thread one set lookup on A (done inline in the
tracked primitives); only a new order comes here, under this module's own
untracked lock.

The graph keeps a topological order (Pearce and Kelly's dynamic algorithm,
as Abseil's deadlock detector does), so a new edge that agrees with the order
is O(1), and only an edge against it searches the region between its ends.
An edge that would close a cycle is not added to the order: the cycle is a
``lock-order-inversion`` finding, made at once in the acquiring thread before
it blocks, with the smallest cycle through the new edge.

Fewer false alarms: a cycle whose edges were all learned while holding one
common other lock (a gate lock) cannot deadlock and is suppressed (counted,
kept for `suppressed()`); cycles through a Lock seen handed between threads
(a latch, not a mutex) are ignored, and so are cycles through a Lock made at
a creation site where such Locks are made (lockdep's lock class: a Lock
released by another thread in one test marks the code that makes it, so the
first instances, used before any hand-off was seen, are not reported either).
A Lock left held across the return of the call that took it (bare
``acquire()``) and released by a later call is handed over as surely, to
whichever call the program's counts pick, this thread's or another's: its
creation site joins them when that release is seen
(`primitives._released_later`).  Suppressions by creation site or function
are honoured.  A cycle learned by one thread alone is still reported, and says
so.

Whether a creation site makes hand-off Locks is decided on the whole window
(the test, the run), not on its prefix: a cycle through a plain Lock held by a
bare ``acquire()`` (a hold that may be a token; a ``with`` block's is a
critical section) whose creation sites have not handed a Lock over yet is
pending (`LockOrder.pending`, `LockOrder.settle`): its class may yet be seen
handing a Lock over.  It is reported when its window ends (the end of a test
under pytest, ``check()``, ``forget()``, ``disable()``, exit; at a watcher
tick once `PENDING_BOUND` seconds old)
unless a Lock of one of its creation sites has been handed over meanwhile:
readerwriterlock's writer takes its ``read_try`` Lock under the count lock,
and when its timed acquire of the resource fails, takes the count lock
holding ``read_try``, in the same call; only the count keeps the two orders
apart, and ``read_try`` is released by the last writer, maybe another thread,
often after the first cycle closed (but every writer's ``acquire()`` that
succeeds returns holding it, and its ``release()`` releases it: the class is
usually known from the first write, long before a bound).  Lockdep does not order the primitives of
the kernel released by another context (semaphores, completions: known by
their type; cross-release, which ordered completions, was withdrawn for its
false positives); a ``threading.Lock`` is both, so its class is known only by
what its Locks are seen doing, and the verdict waits for the window to end.

Tokens teach no order: a plain Lock still held after the function that took it
has returned (``acquire()`` of a readers-writer lock leaving its group lock to
the last reader, a latch, a hand-off) is not a critical section of that
thread: any thread may release it, and who will is a matter of the program's
own counts, not of lock order.  Holding such a token, a thread's next acquire
is ordered after the nearest lock it holds in a frame still running instead
(`held_as_token`).  A lock taken in a generator or coroutine (a
``contextmanager``) may be held across its suspension: it is never a token.

Locks that are garbage-collected leave the graph; node and edge counts are
capped, with one warning.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import time
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from deadlockwatch._model import (
    LOCK_ORDER_INVERSION,
    ORDER_THEN,
    ORDER_WAITS,
    WAIT_UNDER_LOCK,
    Check,
    Conditions,
    Finding,
    Frame,
    OrderEdge,
    ResourceInfo,
    Site,
    resource_labels,
)
from deadlockwatch._track import native as _native
from deadlockwatch._track import state as _state
from deadlockwatch._track.primitives import HANDOFF_SITES
from deadlockwatch._track.primitives import held_as_token as held_as_token
from deadlockwatch._track.state import RawStack, frames_of, raw_stack_and_line

_state.internal_file(__file__)

MAX_NODES = 100_000
MAX_EDGES = 1_000_000
#: Seconds an inversion may stay pending before a watcher tick reports it.
PENDING_BOUND = 30.0


@dataclass
class _Edge:
    src: int
    dst: int
    thread: str
    thread_ident: int
    thread_serial: int
    site: Site | None
    stack: tuple[Frame, ...] | RawStack
    gates: frozenset[int]
    #: ``src`` is a plain Lock held by a bare ``acquire()`` (not ``with``): a
    #: hold that may be a token passed between threads (see `_Pending`).
    bare: bool = False
    relation: str = ORDER_THEN
    taken_at: Site | None = None
    #: Learned by an asyncio task (``thread`` names it), not a thread.
    task: bool = False
    #: The gates themselves, weakly: an address in ``gates`` is the same gate
    #: in two edges only if it is the same lock in both (a collected gate's
    #: address may be a new lock's by the time the other edge is learned).
    gate_refs: dict[int, weakref.ref[Any]] = field(default_factory=dict)


@dataclass
class _Pending:
    """An inversion through a Lock held by bare ``acquire()`` whose creation
    site has not been seen handing a Lock over yet: whether that site makes
    hand-off Locks is told by the whole window (a test, the run), not by its
    prefix before the cycle closed (see `LockOrder.settle`)."""

    finding: Finding
    locks: list[weakref.ref[Any]]
    sites: list[Site]
    since: float


class _Node:
    __slots__ = ("created", "inn", "key", "known_by", "order", "out", "ref", "type")

    def __init__(self, key: int, ref: Any, type_: str, created: Site | None, order: int) -> None:
        self.key = key
        self.ref = ref
        self.type = type_
        self.created = created
        self.order = order
        self.out: dict[int, _Edge] = {}
        self.inn: set[int] = set()
        #: Locks that know the order to this one without an edge: the order
        #: closed a cycle (kept in their ``_dw_after`` so it is reported once).
        self.known_by: set[int] = set()


class _Search:
    """One side of the bounded breadth-first search of `LockOrder._path_if_cycle`:
    from ``start`` along edges (``forward``) or against them, through nodes
    ordered no later (forward) or no earlier (backward) than ``bound``."""

    __slots__ = ("bound", "dist", "forward", "frontier", "levels", "nodes")

    def __init__(self, nodes: dict[int, _Node], start: _Node, forward: bool, bound: int) -> None:
        self.nodes = nodes
        self.forward = forward
        self.bound = bound
        self.dist: dict[int, int] = {start.key: 0}
        self.frontier: list[_Node] = [start]
        self.levels: list[list[_Node]] = [self.frontier]

    def expand(self, other: dict[int, int]) -> bool:
        """Search one level further; whether it reached a node of ``other``."""
        nodes, dist, bound, forward = self.nodes, self.dist, self.bound, self.forward
        level = len(self.levels)
        nxt: list[_Node] = []
        met = False
        for n in self.frontier:
            for k in n.out if forward else n.inn:
                if k in dist:
                    continue
                m = nodes.get(k)
                if m is None or ((m.order > bound) if forward else (m.order < bound)):
                    continue
                dist[k] = level
                nxt.append(m)
                met = met or k in other
        self.frontier = nxt
        if nxt:
            self.levels.append(nxt)
        return met

    def found(self) -> list[_Node]:
        return [n for level in self.levels for n in level]


def _matches(site: Site | None, patterns: Iterable[str]) -> bool:
    if site is None:
        return False
    for p in patterns:
        if ":" not in p:
            continue
        left, right = p.rsplit(":", 1)
        if right.isdigit():
            if site.line == int(right) and site.file.replace(os.sep, "/").endswith(left):
                return True
        elif site.function == right and (
            left == "" or _module_of(site.file).endswith(left) or site.file.endswith(left)
        ):
            return True
    return False


def _module_of(path: str) -> str:
    stem = path[:-3] if path.endswith(".py") else path
    return stem.replace(os.sep, ".").replace("/", ".")


class LockOrder:
    """The lock-order graph of one process."""

    def __init__(self) -> None:
        self._lock = _native.RawRLock()
        self.nodes: dict[int, _Node] = {}
        self.edge_count = 0
        self._next_order = 0
        self._reported: set[frozenset[tuple[int, int]]] = set()
        self.suppressed_cycles: list[Finding] = []
        self.suppress: tuple[str, ...] = ()
        self.full_warned = False
        self._dead: list[int] = []
        #: Inversions waiting for the end of their window (`settle`).
        self.pending: list[_Pending] = []

    # -- maintenance ------------------------------------------------------------
    def forget(self) -> None:
        """Clear every learned order (and what was reported or suppressed)."""
        with self._lock:
            for node in self.nodes.values():
                lock = node.ref()
                if lock is not None:
                    lock._dw_after = frozenset()
            self.nodes.clear()
            self._dead.clear()
            self.edge_count = 0
            self._reported.clear()
            self.suppressed_cycles.clear()
            self.pending.clear()

    def _gone(self, key: int, _ref: object) -> None:
        """A lock was garbage-collected (in any thread, at any moment, maybe
        inside `learn` itself): forget it as a known successor at once (also
        where the order closed a cycle and has no edge: a new lock at the same
        address must not pass for known), and
        leave the graph surgery to the next `learn`, under the lock."""
        try:
            node = self.nodes.get(key)
            if node is None:
                return
            for src in list(node.inn | node.known_by):
                pred = self.nodes.get(src)
                lock = pred.ref() if pred is not None else None
                # (A stale key may name a new lock at a collected one's
                # address: whatever it knows about ``key`` is stale too.)
                if lock is not None and type(lock._dw_after) is set:
                    lock._dw_after.discard(key)
            self._dead.append(key)
        except Exception:
            pass  # at interpreter shutdown

    def _collect(self) -> None:
        """Drop the nodes of collected locks (called under the lock), and the
        cycles reported through them: a new lock at a collected one's address
        may close a new cycle with the same addresses, which must be reported."""
        while self._dead:
            key = self._dead.pop()
            node = self.nodes.get(key)
            if node is None or node.ref() is not None:
                continue  # already gone, or the address is a new lock's
            del self.nodes[key]
            if self._reported:
                self._reported = {
                    cycle for cycle in self._reported if not any(key in pair for pair in cycle)
                }
            for src in node.inn:
                pred = self.nodes.get(src)
                if pred is not None and pred.out.pop(key, None) is not None:
                    self.edge_count -= 1
            for dst in node.out:
                succ = self.nodes.get(dst)
                if succ is not None:
                    succ.inn.discard(key)
                self.edge_count -= 1

    def _node(self, lock: Any) -> _Node | None:
        key = id(lock)
        node = self.nodes.get(key)
        if node is not None:
            if node.ref() is lock:
                return node
            self._dead.append(key)  # a collected lock's address, reused
            self._collect()
        if len(self.nodes) >= MAX_NODES:
            return None
        ref = weakref.ref(lock, functools.partial(self._gone, key))
        created = getattr(lock, "_created", None)
        node = _Node(key, ref, lock._dw_type, created, self._next_order)
        self._next_order += 1
        self.nodes[key] = node
        return node

    # -- learning an order ------------------------------------------------------
    def learn(
        self,
        src: Any,
        dst: Any,
        held: list[Any],
        thread: str,
        ident: int,
        serial: int,
        *,
        relation: str = ORDER_THEN,
        taken_at: Site | None = None,
        where: tuple[Site | None, tuple[Frame, ...]] | None = None,
        task: bool = False,
    ) -> Finding | None:
        """Learn ``src -> dst``; return a finding if it closes a new cycle.

        ``relation`` and ``taken_at``: what the edge is, for an edge through a
        signal (`signals`); ``where``: its site and stack, when not the
        calling thread's own (a signal learned from an earlier call);
        ``task``: learned by an asyncio task (`aio`), which ``thread``,
        ``ident`` and ``serial`` are of."""
        with self._lock:
            self._collect()
            if type(src._dw_after) is frozenset:
                src._dw_after = set()
            src._dw_after.add(id(dst))  # known from now on, whatever happens below
            if self.edge_count >= MAX_EDGES or len(self.nodes) >= MAX_NODES:
                self._warn_full()
                return None
            a, b = self._node(src), self._node(dst)
            if a is None or b is None:
                self._warn_full()
                return None
            if b.key in a.out:
                return None
            stack: tuple[Frame, ...] | RawStack
            if where is None:
                # Kept raw (code, line): a learned order is read only if it
                # ends up in a finding (`_finding` resolves it then).
                stack, line = raw_stack_and_line(_native.getframe())
                site = None
                if stack:
                    code = stack[-1][0]
                    site = Site(code.co_filename, line, code.co_name)
            else:
                site, stack = where
            around = [h for h in held if h is not src and h is not dst and _mutex(h)]
            gates = frozenset(id(h) for h in around)
            bare = a.type == "Lock" and not getattr(src, "_ctx", True) and src.locked()
            edge = _Edge(
                a.key,
                b.key,
                thread,
                ident,
                serial,
                site,
                stack,
                gates,
                bare,
                relation,
                taken_at,
                task,
            )
            if around:
                edge.gate_refs = _weak_refs(around)
            path = self._path_if_cycle(a, b)
            if path is None:
                a.out[b.key] = edge
                b.inn.add(a.key)
                self.edge_count += 1
                return None
            b.known_by.add(a.key)
            return self._inversion(edge, path, dst)

    def knows(self, src: Any, dst: Any) -> bool:
        """Whether ``src -> dst`` is learned (read without the graph's lock:
        a stale answer only learns it again)."""
        node = self.nodes.get(id(src))
        if node is None or node.ref() is not src:
            return False
        if id(dst) in node.out:
            return True
        other = self.nodes.get(id(dst))
        return other is not None and node.key in other.known_by

    def _warn_full(self) -> None:
        if not self.full_warned:
            self.full_warned = True
            _write(
                "deadlockwatch: warning: the lock-order graph is full "
                f"({MAX_NODES} locks or {MAX_EDGES} orders); new orders are not checked\n"
            )

    def _path_if_cycle(self, a: _Node, b: _Node) -> list[int] | None:
        """Pearce-Kelly insertion of a -> b: None if the order stays acyclic
        (the topological order is updated), else the shortest path b ... a.

        Only nodes ordered between b and a can be on a path from b to a, so
        both searches stay in that region: forward from b (along edges) and
        backward from a (against them), a level at a time, the smaller
        frontier first.  If they meet, the shortest path is read off the two
        searches (at the cost of the levels searched, not of the region); if
        not, both have covered their whole side of the region, which is what
        the reordering needs."""
        if a.order < b.order:
            return None
        fwd = _Search(self.nodes, b, forward=True, bound=a.order)
        bwd = _Search(self.nodes, a, forward=False, bound=b.order)
        met = b.key in bwd.dist
        while not met and fwd.frontier and bwd.frontier:
            if len(fwd.frontier) <= len(bwd.frontier):
                met = fwd.expand(bwd.dist)
            else:
                met = bwd.expand(fwd.dist)
        if met:
            return self._meeting_path(fwd, bwd)
        while fwd.frontier:  # no path: finish the regions for the reordering
            fwd.expand({})
        while bwd.frontier:
            bwd.expand({})
        self._reorder(bwd.found(), fwd.found())
        return None

    @staticmethod
    def _reorder(before: list[_Node], after: list[_Node]) -> None:
        """Move what reaches a before what b reaches, reusing their order slots."""
        moved = sorted(before, key=lambda n: n.order) + sorted(after, key=lambda n: n.order)
        slots = sorted(n.order for n in moved)
        for n, order in zip(moved, slots, strict=True):
            n.order = order

    def _meeting_path(self, fwd: _Search, bwd: _Search) -> list[int]:
        """The shortest path from b to a that a plain breadth-first search from
        b would find (the first in the order of each node's out-edges), given
        the two searches just met: every shortest path has its first
        ``len(fwd.levels) - 1`` steps in the forward search and the rest in
        the backward one."""
        levels = fwd.levels
        # on[k]: the nodes at distance k from b on some shortest path to a.
        on = [set[int]() for _ in levels]
        on[-1] = {n.key for n in levels[-1] if n.key in bwd.dist}
        for k in range(len(levels) - 2, -1, -1):
            ahead = on[k + 1]
            on[k] = {n.key for n in levels[k] if not ahead.isdisjoint(n.out)}
        node = levels[0][0]
        path = [node.key]
        for k in range(1, len(levels)):
            key = next(x for x in node.out if x in on[k])
            path.append(key)
            node = self.nodes[key]
        for left in range(bwd.dist[node.key] - 1, -1, -1):
            key = next(x for x in node.out if bwd.dist.get(x) == left)
            path.append(key)
            node = self.nodes[key]
        return path

    # -- reporting ----------------------------------------------------------------
    def _inversion(self, new: _Edge, path: list[int], dst: Any) -> Finding | None:
        """``path`` runs from the new edge's destination back to its source."""
        edges = [new] + [self.nodes[u].out[v] for u, v in itertools.pairwise(path)]
        key = frozenset((e.src, e.dst) for e in edges)
        if key in self._reported:
            return None
        self._reported.add(key)
        locks = [self.nodes[e.src].ref() for e in edges]
        if any(
            lock is None or getattr(lock, "_handoff", False) or getattr(lock, "_dw_shared", False)
            for lock in locks
        ):
            return None  # a Lock handed between threads (tasks) is a latch, not a mutex
        if any(
            self.nodes[e.src].type == "Lock" and self.nodes[e.src].created in HANDOFF_SITES
            for e in edges
        ):
            return None  # so is one made where Locks handed between threads are made
        finding = _finding(self, edges)
        members = {e.src for e in edges}
        gates = frozenset.intersection(*(e.gates for e in edges)) - members
        if gates and any(_same_gate(g, edges) for g in gates):
            self.suppressed_cycles.append(finding)
            return None
        if self.suppress and (
            any(_matches(self.nodes[e.src].created, self.suppress) for e in edges)
            or any(_matches(e.site, self.suppress) for e in edges)
        ):
            self.suppressed_cycles.append(finding)
            return None
        if any(e.bare for e in edges):
            plain = [n for n in (self.nodes[e.src] for e in edges) if n.type == "Lock"]
            self.pending.append(
                _Pending(
                    finding,
                    [n.ref for n in plain],
                    [n.created for n in plain if n.created is not None],
                    _native.monotonic(),
                )
            )
            return None
        return finding

    def settle(self, older_than: float | None = None) -> list[Finding]:
        """The pending inversions to report now: those none of whose plain
        Locks has been seen handed over since, neither itself nor any Lock
        made at its creation site (those that have been are dropped, as
        if the hand-off had come first).  With ``older_than``, only those
        pending at least that many seconds (the watcher's bound); without it,
        all of them (the end of a test, `check`, `disable`, exit)."""
        if not self.pending:
            return []
        now = _native.monotonic()
        with self._lock:
            due: list[Finding] = []
            keep: list[_Pending] = []
            for p in self.pending:
                if older_than is not None and now - p.since < older_than:
                    keep.append(p)
                    continue
                locks = [ref() for ref in p.locks]
                if any(getattr(lock, "_handoff", False) for lock in locks) or any(
                    site in HANDOFF_SITES for site in p.sites
                ):
                    continue  # a hand-off Lock after all: a token, not a mutex
                due.append(p.finding)
            self.pending = keep
            return due


def _frames(stack: tuple[Frame, ...] | RawStack) -> tuple[Frame, ...]:
    """An edge's stack as a report shows it (a learned one is kept raw)."""
    if stack and not isinstance(stack[0], Frame):
        return frames_of(stack)
    return stack  # type: ignore[return-value]


def _weak_refs(locks: list[Any]) -> dict[int, weakref.ref[Any]]:
    refs: dict[int, weakref.ref[Any]] = {}
    for lock in locks:
        with contextlib.suppress(TypeError):  # not weakly referable: its address is all
            refs[id(lock)] = weakref.ref(lock)
    return refs


def _same_gate(key: int, edges: list[_Edge]) -> bool:
    """Whether the gate at address ``key`` was the same lock in every edge
    of a cycle (not a collected lock and a new one that got its address):
    only a lock held around every order of the cycle keeps them apart.  The
    first edge is the one just learned, under that gate, which is alive."""
    first = edges[0].gate_refs.get(key)
    gate = first() if first is not None else None
    if gate is None:
        return not any(e.gate_refs for e in edges)  # nothing to tell by
    for e in edges[1:]:
        ref = e.gate_refs.get(key)
        if ref is None or ref() is not gate:
            return False
    return True


def _mutex(lock: Any) -> bool:
    """Whether holding ``lock`` excludes every other thread, as a gate must: a
    Lock or RLock, but not a semaphore (units for several threads at once, or
    a signal) nor a Lock seen handed between threads (a latch)."""
    return (
        getattr(lock, "_dw_type", "") in ("Lock", "RLock", "asyncio.Lock")
        and not getattr(lock, "_handoff", False)
        and not getattr(lock, "_dw_shared", False)
    )


def _finding(graph: LockOrder, edges: list[_Edge]) -> Finding:
    nodes = graph.nodes
    resources = tuple(
        ResourceInfo(
            key=e.src,
            id=hex(e.src),
            type=nodes[e.src].type,
            created_at=nodes[e.src].created,
        )
        for e in edges
    )
    order = tuple(
        OrderEdge(
            held=e.src,
            acquired=e.dst,
            thread=e.thread,
            thread_ident=e.thread_ident,
            site=e.site,
            stack=_frames(e.stack),
            relation=e.relation,
            taken_at=e.taken_at,
        )
        for e in edges
    )
    threads = {e.thread_serial for e in edges}
    one = len(threads) == 1
    by_key = resource_labels(resources)
    labels = [by_key[e.src] for e in edges]
    if any(e.relation != ORDER_THEN for e in edges):
        kind = WAIT_UNDER_LOCK
        cause, conditions = _through_a_signal(edges, labels, one)
    else:
        kind = LOCK_ORDER_INVERSION
        tasks = all(e.task for e in edges)
        cause, conditions = _lock_order(len(edges), len(threads), labels, one, tasks)
    return Finding(
        kind=kind,
        cycle=(),
        threads=(),
        resources=resources,
        conditions=conditions,
        cause=cause,
        order=order,
        single_thread=one,
        pid=os.getpid(),
        time=time.time(),
    )


def _lock_order(
    n: int, threads: int, labels: list[str], one: bool, tasks: bool = False
) -> tuple[str, Conditions]:
    """The cause and conditions of a plain lock-order inversion (between
    asyncio tasks: ``tasks``)."""
    who = "task" if tasks else "thread"
    cause = (
        f"{n} locks are taken in a cyclic order "
        + (
            f"(seen in one {who} only; other {who}s running the same code can deadlock)"
            if one
            else f"by {threads} {who}s"
        )
        + ": "
        + " -> ".join([*labels, labels[0]])
    )
    conditions = Conditions(
        Check(True, "the locks are mutually exclusive"),
        Check(True, "each order was learned while the first lock was held"),
        Check(True, "each order was learned from an untimed, blocking acquire"),
        Check(
            False,
            f"not now: no {who} is waiting, but {who}s taking these locks concurrently "
            "in these orders deadlock",
        ),
    )
    return cause, conditions


def _through_a_signal(edges: list[_Edge], labels: list[str], one: bool) -> tuple[str, Conditions]:
    """The cause and conditions of a cycle through a signal (`signals`): a
    wait under a lock that the signal's signaller needs, maybe through lock
    orders."""
    by_key = dict(zip((e.src for e in edges), labels, strict=True))
    waits = [f"{by_key[e.dst]} under {by_key[e.src]}" for e in edges if e.relation == ORDER_WAITS]
    cause = (
        "a thread waits for a signal while holding a lock that its signaller needs"
        + (" (seen in one thread only)" if one else "")
        + ": a wait on "
        + ", ".join(waits)
        + "; "
        + " -> ".join([*labels, labels[0]])
    )
    conditions = Conditions(
        Check(True, "the locks are mutually exclusive; a signal has one source here"),
        Check(True, "the wait was made while holding the lock"),
        Check(True, "the wait is untimed, and the lock is released only by its holder"),
        Check(
            False,
            "not now: nobody is waiting, but when the wait comes first, its signaller "
            "blocks on the lock and the waiter waits forever",
        ),
    )
    return cause, conditions


def _write(text: str) -> None:
    with contextlib.suppress(OSError):
        os.write(2, text.encode())


ORDER = LockOrder()
