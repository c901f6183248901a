"""Section 2: contended throughput, 4 threads on one lock and 4 threads on 4 locks.

Each thread runs ``with lock: counter += 1`` a fixed number of times once a
start event fires; throughput is the total number of acquisitions per second
from the start event to the last thread's end.  "tracked" runs inside
``deadlockwatch.enable()`` (default options: watcher running, lock order on)
with the locks and threads made after it, "raw" with the detector off.
Rounds alternate raw and tracked; the median of each is compared.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import deadlockwatch

from ._common import Section, interleave, median, ratio

THREADS = 4
JOIN_TIMEOUT = 120.0


def _throughput(kind: str, shared: bool, per_thread: int) -> float:
    factory: Callable[[], Any] = getattr(threading, kind)
    locks = [factory()] if shared else [factory() for _ in range(THREADS)]
    start = threading.Event()
    counts = [0] * THREADS

    def worker(i: int, lock: Any) -> None:
        start.wait(JOIN_TIMEOUT)
        n = 0
        for _ in range(per_thread):
            with lock:
                n += 1
        counts[i] = n

    threads = [
        threading.Thread(target=worker, args=(i, locks[i % len(locks)]), daemon=True)
        for i in range(THREADS)
    ]
    for t in threads:
        t.start()
    time.sleep(0.01)  # let every thread reach the start line
    t0 = time.perf_counter()
    start.set()
    for t in threads:
        t.join(JOIN_TIMEOUT)
    elapsed = time.perf_counter() - t0
    if any(t.is_alive() for t in threads) or sum(counts) != THREADS * per_thread:
        raise RuntimeError("contended benchmark: a thread did not finish")
    return THREADS * per_thread / elapsed


def _measure(kind: str, shared: bool, per_thread: int, tracked: bool) -> Callable[[], float]:
    def run() -> float:
        if not tracked:
            return _throughput(kind, shared, per_thread)
        deadlockwatch.enable(text=False)
        try:
            return _throughput(kind, shared, per_thread)
        finally:
            deadlockwatch.disable()

    return run


def run(quick: bool) -> Section:
    per_thread = 5_000 if quick else 200_000
    repeat = 2 if quick else 7
    section = Section(
        key="contended",
        title=f"Contended: {THREADS} threads, acquisitions per second (median), tracked / raw",
        columns=[
            ("scenario", "scenario"),
            ("raw_ops_per_s", "raw ops/s"),
            ("tracked_ops_per_s", "tracked ops/s"),
            ("raw_ns", "raw ns/op"),
            ("tracked_ns", "tracked ns/op"),
            ("ratio", "throughput ratio"),
            ("ratio_best", "ratio of bests"),
        ],
        params={"threads": THREADS, "acquisitions_per_thread": per_thread, "repeat": repeat},
    )
    # Warm up: the first enable() imports wrapt and (in the watcher) networkx.
    deadlockwatch.enable(text=False)
    deadlockwatch.disable()
    for kind in ("Lock", "RLock"):
        for shared in (True, False):
            label = (
                f"{THREADS} threads, 1 {kind}"
                if shared
                else f"{THREADS} threads, {THREADS} {kind}s"
            )
            res = interleave(
                {
                    "raw": _measure(kind, shared, per_thread, False),
                    "tracked": _measure(kind, shared, per_thread, True),
                },
                repeat,
            )
            raw, tracked = median(res["raw"]), median(res["tracked"])
            section.rows.append(
                {
                    "scenario": label,
                    "raw_ops_per_s": round(raw),
                    "tracked_ops_per_s": round(tracked),
                    "raw_ns": round(1e9 / raw, 1),
                    "tracked_ns": round(1e9 / tracked, 1),
                    "ratio": ratio(tracked, raw),
                    "ratio_best": ratio(max(res["tracked"]), max(res["raw"])),
                    "raw_samples": [round(x) for x in res["raw"]],
                    "tracked_samples": [round(x) for x in res["tracked"]],
                }
            )
    section.notes.append(
        "throughput ratio = tracked / raw ops per second (1.0 = no cost; lower is slower)."
    )
    return section
