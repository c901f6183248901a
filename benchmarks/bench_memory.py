"""Section 6: memory, measured with tracemalloc.

Bytes per primitive: N primitives are made into a preallocated list and the
traced memory before and after is divided by N (raw, tracked, tracked after
one acquire/release, and tracked pairs whose order was learned into the
lock-order graph).

Churn: tracked locks are made, used and dropped in batches, 1,000,000 in
all (100,000 with --quick), with lock order off, then on (pairs taken
nested, so every lock becomes a node of the order graph, held there by a
weakref).  What stays allocated afterwards is the growth.  The order graph
removes the nodes of collected locks on its next ``learn`` (not at once):
growth is measured after one more learn, at the start as at the end, and
what that learn freed (the nodes of the last dropped batch) is shown as
"freed at next learn".
"""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable
from typing import Any

from deadlockwatch._track import native as _native
from deadlockwatch._track import primitives as _primitives
from deadlockwatch._track import state as _state
from deadlockwatch._track.order import ORDER
from deadlockwatch._track.primitives import (
    TrackedBoundedSemaphore,
    TrackedLock,
    TrackedRLock,
    TrackedSemaphore,
)
from deadlockwatch._watch.watcher import DETECTOR

from ._common import Section


def _traced() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def _per_object(make: Callable[[], Any], n: int, prepare: Callable[[list[Any]], None]) -> float:
    objs: list[Any] = [None] * n
    before = _traced()
    for i in range(n):
        objs[i] = make()
    prepare(objs)
    after = _traced()
    del objs
    return (after - before) / n


def _nothing(objs: list[Any]) -> None:
    pass


def _use(objs: list[Any]) -> None:
    for lock in objs:
        with lock:
            pass


def _nest_pairs(objs: list[Any]) -> None:
    _primitives.learn_order = DETECTOR.learn_order
    try:
        for outer, inner in zip(objs[::2], objs[1::2], strict=True):
            with outer, inner:
                pass
    finally:
        _primitives.learn_order = None


def _churn(total: int, batch: int, order: bool) -> dict[str, float]:
    def one_batch() -> None:
        locks = [TrackedLock() for _ in range(batch)]
        if order:
            _nest_pairs(locks)
        else:
            _use(locks)

    def settle() -> None:
        # With lock order on, the graph drops the nodes of collected locks on
        # its next learn: one more (two fresh locks, dropped at once) does it.
        if order:
            _nest_pairs([TrackedLock(), TrackedLock()])

    one_batch()  # warm up: lazily made structures, the thread's record
    settle()
    base = _traced()
    objects = len(gc.get_objects())
    nodes = len(ORDER.nodes)
    for _ in range(total // batch):
        one_batch()
    before_settle = _traced()
    settle()
    after = _traced()
    return {
        "growth_bytes": after - base,
        "deferred_bytes": before_settle - after,
        "gc_objects_growth": len(gc.get_objects()) - objects,
        "graph_nodes_growth": len(ORDER.nodes) - nodes,
    }


def run(quick: bool) -> Section:
    n = 2_000 if quick else 20_000
    total, batch = (50_000, 5_000) if quick else (1_000_000, 10_000)
    section = Section(
        key="memory",
        title="Memory (tracemalloc): bytes per primitive, and growth after churn",
        columns=[
            ("case", "case"),
            ("raw_bytes", "raw B"),
            ("tracked_bytes", "tracked B"),
            ("extra_bytes", "extra B"),
            ("growth_bytes", "growth B"),
            ("growth_per_lock", "growth B/lock"),
            ("deferred_bytes", "freed at next learn B"),
        ],
        params={"per_object_n": n, "churn_total": total, "churn_batch": batch},
    )
    tracemalloc.start()
    try:
        _state.current_record()
        pairs: list[
            tuple[str, Callable[[], Any], Callable[[], Any], Callable[[list[Any]], None]]
        ] = [
            ("Lock", _native.ORIGINAL_LOCK, TrackedLock, _nothing),
            ("Lock, after one acquire/release", _native.ORIGINAL_LOCK, TrackedLock, _use),
            ("RLock", _native.ORIGINAL_RLOCK, TrackedRLock, _nothing),
            ("RLock, after one acquire/release", _native.ORIGINAL_RLOCK, TrackedRLock, _use),
            ("Semaphore", _native.ORIGINAL_SEMAPHORE, TrackedSemaphore, _nothing),
            (
                "BoundedSemaphore",
                _native.ORIGINAL_BOUNDED_SEMAPHORE,
                TrackedBoundedSemaphore,
                _nothing,
            ),
            (
                "Semaphore, after one acquire/release",
                _native.ORIGINAL_SEMAPHORE,
                TrackedSemaphore,
                _use,
            ),
            (
                "Lock in the order graph (pairs nested, one edge per pair)",
                _native.ORIGINAL_LOCK,
                TrackedLock,
                _nest_pairs,
            ),
        ]
        for name, raw, tracked, prepare in pairs:
            raw_b = _per_object(raw, n, _use if prepare is not _nothing else _nothing)
            tracked_b = _per_object(tracked, n, prepare)
            section.rows.append(
                {
                    "case": f"per primitive: {name}",
                    "raw_bytes": round(raw_b, 1),
                    "tracked_bytes": round(tracked_b, 1),
                    "extra_bytes": round(tracked_b - raw_b, 1),
                    "growth_bytes": None,
                    "growth_per_lock": None,
                    "deferred_bytes": None,
                }
            )
        for order in (False, True):
            res = _churn(total, batch, order)
            section.rows.append(
                {
                    "case": f"churn: {total:,} tracked Locks made, used, dropped; "
                    f"lock order {'on' if order else 'off'}",
                    "raw_bytes": None,
                    "tracked_bytes": None,
                    "extra_bytes": None,
                    "growth_bytes": res["growth_bytes"],
                    "growth_per_lock": round(res["growth_bytes"] / total, 4),
                    "deferred_bytes": res["deferred_bytes"] if order else None,
                    "gc_objects_growth": res["gc_objects_growth"],
                    "graph_nodes_growth": res["graph_nodes_growth"],
                }
            )
    finally:
        tracemalloc.stop()
    section.notes.append(
        "growth: traced bytes still allocated after the churn and gc.collect(), against a "
        "baseline taken after one warm-up batch."
    )
    return section
