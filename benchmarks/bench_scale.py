"""Section 5: scale.

The watcher's tick: ``DETECTOR.tick()`` called directly (the detector itself
is not enabled, so no watcher thread competes) in a process with many threads
and many live tracked locks.  Every parked thread holds one of the locks and
sleeps on an untracked event; 0, then 100, then 500 of the threads block on
tracked locks held by one holder thread (which is running, so they are not
deadlocked: the tick analyses and finds nothing, the worst steady state).
Ticks are timed once every wait is older than the threshold, so each one
really captures and analyses.

The lock-order graph: a fresh ``LockOrder`` with many locks and edges of a
random DAG, learned in random order; then single ``learn`` calls are timed:
an edge already known, a new edge that closes no cycle, a new edge that
closes one (an inversion finding is built), and the check the tracked
primitives make inline for a known order (one set lookup, no ``learn``).
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any

from deadlockwatch._config import Config
from deadlockwatch._track import native as _native
from deadlockwatch._track import state as _state
from deadlockwatch._track.order import LockOrder
from deadlockwatch._track.primitives import TrackedLock
from deadlockwatch._watch.watcher import DETECTOR

from ._common import Section, calibrate, median, ns_per_op, wait_for

TIMEOUT = 120.0
HOLDER_LOCKS = 10


def _tick_ns(number: int) -> float:
    t0 = time.perf_counter_ns()
    for _ in range(number):
        DETECTOR.tick()
    return (time.perf_counter_ns() - t0) / number


def tick_rows(threads: int, locks: int, levels: list[int], samples: int) -> list[dict[str, Any]]:
    if DETECTOR.enabled:
        raise RuntimeError("the detector must be off: tick() is called directly")
    old_stack = threading.stack_size()
    threading.stack_size(256 * 1024)
    live = [TrackedLock() for _ in range(locks)]
    targets = [TrackedLock() for _ in range(HOLDER_LOCKS)]
    park = threading.Event()
    holder_ready = threading.Event()
    release_holder = threading.Event()
    groups = [threading.Event() for _ in levels]
    started: list[int] = []
    rows: list[dict[str, Any]] = []
    all_threads: list[threading.Thread] = []

    def holder() -> None:
        for t in targets:
            t.acquire()
        holder_ready.set()
        release_holder.wait(TIMEOUT)
        for t in targets:
            t.release()

    def member(i: int, group: int | None) -> None:
        mine = live[i % len(live)]
        with mine:
            started.append(i)
            if group is not None:
                groups[group].wait(TIMEOUT)
                with targets[i % HOLDER_LOCKS]:
                    pass
            park.wait(TIMEOUT)

    try:
        h = threading.Thread(target=holder, daemon=True)
        h.start()
        all_threads.append(h)
        holder_ready.wait(TIMEOUT)
        # Thread i belongs to the first level whose count exceeds i.
        for i in range(threads - 1):
            group = next((g for g, level in enumerate(levels) if i < level), None)
            t = threading.Thread(target=member, args=(i, group), daemon=True)
            t.start()
            all_threads.append(t)
        if not wait_for(lambda: len(started) >= threads - 1, TIMEOUT, 0.01):
            raise RuntimeError("scale: threads did not start")
        threshold = Config().threshold
        for g, level in enumerate(levels):
            groups[g].set()
            if not wait_for(lambda level=level: len(_state.blocked) >= level, TIMEOUT, 0.01):
                raise RuntimeError(f"scale: {level} threads did not block")
            time.sleep(threshold + 0.05)  # every wait older than the threshold
            if level == 0:
                number = calibrate("tick()", {"tick": DETECTOR.tick}, 0.05)
                values = [_tick_ns(number) for _ in range(5)]
                per = median(values)
            else:
                values = [_tick_ns(1) for _ in range(samples)]
                per = median(values)
            rows.append(
                {
                    "case": f"tick, {threads:,} threads, {locks:,} locks, {level} blocked",
                    "median_us": round(per / 1e3, 2),
                    "min_us": round(min(values) / 1e3, 2),
                    "max_us": round(max(values) / 1e3, 2),
                    "samples": len(values),
                }
            )
    finally:
        release_holder.set()
        for ev in groups:
            ev.set()
        park.set()
        for t in all_threads:
            t.join(TIMEOUT)
        threading.stack_size(old_stack)
    if any(t.is_alive() for t in all_threads):
        raise RuntimeError("scale: threads did not end")
    return rows


def graph_rows(n_locks: int, n_edges: int, samples: int, seed: int = 6) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    order = LockOrder()
    locks = [TrackedLock() for _ in range(n_locks)]
    rank = list(range(n_locks))
    rng.shuffle(rank)  # the hidden topological order of the random DAG
    edges: set[tuple[int, int]] = set()
    while len(edges) < n_edges:
        a, b = rng.sample(range(n_locks), 2)
        if rank[a] > rank[b]:
            a, b = b, a
        edges.add((a, b))
    edge_list = list(edges)
    rng.shuffle(edge_list)
    ident = _native.get_ident()

    def learn(a: int, b: int) -> Any:
        return order.learn(locks[a], locks[b], [locks[a]], "bench", ident, 1)

    t0 = time.perf_counter()
    for a, b in edge_list:
        if learn(a, b) is not None:
            raise RuntimeError("graph: a DAG edge closed a cycle")
    build = time.perf_counter() - t0
    if order.edge_count != n_edges:
        raise RuntimeError(f"graph: {order.edge_count} edges learned, {n_edges} expected")

    def timed(a: int, b: int) -> tuple[float, Any]:
        t = time.perf_counter_ns()
        result = learn(a, b)
        return time.perf_counter_ns() - t, result

    known = [timed(*edge_list[rng.randrange(n_edges)])[0] for _ in range(samples)]
    fresh: list[float] = []
    cycles: list[float] = []
    attempts = 0
    # New edges that agree with the DAG's hidden order first (none can close
    # a cycle), then edges against it (most close one: a finding).
    while len(fresh) < samples and attempts < 50 * samples:
        attempts += 1
        a, b = rng.sample(range(n_locks), 2)
        if rank[a] > rank[b]:
            a, b = b, a
        if (a, b) in edges:
            continue
        ns, result = timed(a, b)
        if result is not None:
            raise RuntimeError("graph: a DAG edge closed a cycle")
        fresh.append(ns)
        edges.add((a, b))
    while len(cycles) < samples and attempts < 100 * samples:
        attempts += 1
        a, b = rng.sample(range(n_locks), 2)
        if rank[a] < rank[b]:
            a, b = b, a
        if (b, a) in edges:
            continue  # the reverse of a learned edge: a cycle of two, too easy
        ns, result = timed(a, b)
        if result is not None:
            cycles.append(ns)
    inline = locks[edge_list[0][0]]
    inline_ns = ns_per_op(
        "key in after", {"key": id(locks[edge_list[0][1]]), "after": inline._dw_after}, 200_000
    )
    size = f"{n_locks:,} locks, {n_edges:,} edges"

    def row(case: str, values: list[float]) -> dict[str, Any]:
        return {
            "case": f"{case} ({size})",
            "median_us": round(median(values) / 1e3, 2) if values else None,
            "min_us": round(min(values) / 1e3, 2) if values else None,
            "max_us": round(max(values) / 1e3, 2) if values else None,
            "samples": len(values),
        }

    return [
        {
            "case": f"order graph: build, mean per new edge ({size})",
            "median_us": round(build / n_edges * 1e6, 2),
            "min_us": None,
            "max_us": None,
            "samples": n_edges,
        },
        row("order graph: learn a known edge", known),
        row("order graph: learn a new edge, no cycle", fresh),
        row("order graph: learn a new edge closing a cycle (finding)", cycles),
        {
            "case": "known order, inline check in acquire (set lookup, no learn)",
            "median_us": round(inline_ns / 1e3, 4),
            "min_us": None,
            "max_us": None,
            "samples": 200_000,
        },
    ]


def run(quick: bool) -> Section:
    if quick:
        threads, locks, levels, samples = 200, 10_000, [0, 20, 100], 10
        g_locks, g_edges, g_samples = 1_000, 10_000, 100
    else:
        threads, locks, levels, samples = 1_000, 100_000, [0, 100, 500], 30
        g_locks, g_edges, g_samples = 10_000, 100_000, 1_000
    section = Section(
        key="scale",
        title="Scale: the watcher's tick and the lock-order graph, microseconds per call",
        columns=[
            ("case", "case"),
            ("median_us", "median us"),
            ("min_us", "min us"),
            ("max_us", "max us"),
            ("samples", "samples"),
        ],
        params={
            "threads": threads,
            "locks": locks,
            "blocked": levels,
            "graph_locks": g_locks,
            "graph_edges": g_edges,
        },
    )
    section.rows += tick_rows(threads, locks, levels, samples)
    section.rows += graph_rows(g_locks, g_edges, g_samples)
    section.notes.append(
        "ticks with blocked threads are timed one by one while 0.05 s wait slices of the "
        "blocked threads compete for the GIL; a tick with 0 blocked is one dict copy."
    )
    return section
