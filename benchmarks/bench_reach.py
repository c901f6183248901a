"""Section 9: who can reach a signal (the watcher's reachability walk).

When threads wait untimed on a signal (an Event, a Condition, a queue, a
future) while holding what others wait for, the watcher works out which
threads can reach it (``deadlockwatch._watch.reach.reach``): one scan of the heap
per level of referrers, then each thread's live locals.  Its cost follows
the size of the heap, so it is timed here on a heap of many objects (quick:
100,000; full: 1,000,000 plus the interpreter's own), with a few threads
parked, for three shapes:

- ``local``: the Event is held only in a parked thread's local variable;
- ``global chain``: the Event lies at the end of a chain of 8 containers that
  starts at a module global (the walk climbs all 8 levels);
- ``in a big list``: the Event is one item of a list of 100,000 objects held
  by a module global.

Each row is the median of the calls, in milliseconds, and whether the walk
ended within its bounds (``complete``; past a bound the object counts as
reachable by every thread, which is never a false alarm).
"""

from __future__ import annotations

import sys
import threading
import time
import types
from typing import Any

from deadlockwatch._watch import reach as _reach

from ._common import Section, median

#: The module whose globals hold the chains (a module of its own, as an application's).
_HOLDER = types.ModuleType("bench_reach_holder")


class _Node:
    def __init__(self, value: Any) -> None:
        self.value = value


def _heap(n: int) -> list[Any]:
    """``n`` small objects the collector tracks (lists, instances), kept alive."""
    out: list[Any] = []
    for i in range(n // 2):
        out.append([i])
        out.append(_Node(i))
    return out


def _time(targets: list[Any], frames: dict[int, Any], samples: int) -> tuple[float, bool]:
    times = []
    complete = True
    for _ in range(samples):
        t0 = time.perf_counter()
        found = _reach.reach(targets, frames)
        times.append((time.perf_counter() - t0) * 1000)
        complete = complete and found.complete
    return median(times), complete


def run(quick: bool) -> Section:
    n = 100_000 if quick else 1_000_000
    samples = 3 if quick else 5
    section = Section(
        key="reach",
        title="Reach: who can reach a waited-for signal, milliseconds per walk",
        columns=[
            ("case", "case"),
            ("heap", "gc objects"),
            ("median_ms", "median ms"),
            ("complete", "within bounds"),
        ],
        params={"objects": n, "samples": samples, "bound_s": _reach.MAX_SECONDS},
    )
    sys.modules[_HOLDER.__name__] = _HOLDER
    _HOLDER.heap = _heap(n)
    local_event = threading.Event()
    chained = threading.Event()
    node: Any = chained
    for _ in range(8):
        node = _Node(node)
    _HOLDER.chain = node
    in_list = threading.Event()
    _HOLDER.big = [*range(100_000), in_list]
    park = threading.Event()

    def parked(ev: threading.Event) -> None:
        park.wait(120)
        ev.is_set()

    threads = [
        threading.Thread(target=parked, args=(local_event if i == 0 else threading.Event(),))
        for i in range(4)
    ]
    for t in threads:
        t.daemon = True
        t.start()
    try:
        me = threading.get_ident()
        frames = {k: v for k, v in sys._current_frames().items() if k != me}
        heap = len(__import__("gc").get_objects())
        for case, target in (
            ("local", local_event),
            ("global chain", chained),
            ("in a big list", in_list),
        ):
            ms, complete = _time([target], frames, samples)
            section.rows.append(
                {"case": case, "heap": heap, "median_ms": round(ms, 2), "complete": complete}
            )
    finally:
        park.set()
        del _HOLDER.heap
        sys.modules.pop(_HOLDER.__name__, None)
    section.notes.append(
        "the walk stops after "
        f"{_reach.MAX_SECONDS:g} s, {_reach.MAX_LEVELS} levels or {_reach.MAX_OBJECTS:,} "
        "objects; past a bound the signal counts as reachable by every thread"
    )
    return section
