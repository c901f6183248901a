"""Section 4: detection latency at the default interval and threshold.

Each scenario really deadlocks a few daemon threads.  Every thread notes
``time.monotonic()`` just before its last, blocking acquire; the latency is
from the latest of those (the last thread blocking) to the moment the main
thread, polling ``DETECTOR.findings`` every millisecond, sees the deadlock
finding.  ``on_deadlock="raise-all"`` then breaks the deadlock, every thread
unwinds, and the next run starts clean.

Executor starvation (a one-worker ThreadPoolExecutor whose task waits for a
task it submitted to the same executor) is only measured if deadlockwatch
reports it: if nothing is found within 2 s the row says "not detected", and
the scenario is then resolved from outside (the inner future is cancelled).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import deadlockwatch
from deadlockwatch._config import Config
from deadlockwatch._track import state as _state
from deadlockwatch._watch.watcher import DETECTOR

from ._common import Section, median, wait_for

DETECT_TIMEOUT = 2.0
LOCK_ORDER_INVERSION = "lock-order-inversion"

#: A scenario starts its threads and returns (their block times, the threads).
Scenario = Callable[[], tuple[list[float], list[threading.Thread]]]


def _start(target: Callable[..., None], *args: Any) -> threading.Thread:
    t = threading.Thread(target=target, args=args, daemon=True)
    t.start()
    return t


def _cycle(n: int) -> tuple[list[float], list[threading.Thread]]:
    """``n`` threads; thread i holds lock i, then takes lock i+1 (mod n)."""
    locks = [threading.Lock() for _ in range(n)]
    barrier = threading.Barrier(n)
    stamps = [0.0] * n

    def worker(i: int) -> None:
        try:
            with locks[i]:
                barrier.wait(DETECT_TIMEOUT)
                stamps[i] = time.monotonic()
                with locks[(i + 1) % n]:
                    pass
        except (deadlockwatch.DeadlockError, threading.BrokenBarrierError):
            pass

    return stamps, [_start(worker, i) for i in range(n)]


def abba() -> tuple[list[float], list[threading.Thread]]:
    return _cycle(2)


def four_cycle() -> tuple[list[float], list[threading.Thread]]:
    return _cycle(4)


def pool_exhaustion() -> tuple[list[float], list[threading.Thread]]:
    """Two threads each take one unit of a 2-unit pool, then a second one."""
    pool = threading.BoundedSemaphore(2)
    barrier = threading.Barrier(2)
    stamps = [0.0, 0.0]

    def worker(i: int) -> None:
        try:
            with pool:
                barrier.wait(DETECT_TIMEOUT)
                stamps[i] = time.monotonic()
                with pool:
                    pass
        except (deadlockwatch.DeadlockError, threading.BrokenBarrierError):
            pass

    return stamps, [_start(worker, i) for i in range(2)]


def _new_deadlock(since: int) -> Any:
    for f in DETECTOR.findings[since:]:
        if f.kind != LOCK_ORDER_INVERSION:
            return f
    return None


def _measure(scenario: Scenario, runs: int) -> tuple[list[float], int]:
    latencies: list[float] = []
    missed = 0
    for _ in range(runs):
        since = len(DETECTOR.findings)
        stamps, threads = scenario()
        found = wait_for(lambda since=since: _new_deadlock(since) is not None, DETECT_TIMEOUT + 1.0)
        seen = time.monotonic()
        if found and all(stamps):
            latencies.append(seen - max(stamps))
        else:
            missed += 1
        for t in threads:
            t.join(DETECT_TIMEOUT)
        # Nothing left blocked before the next run (bounded).
        wait_for(lambda: not _state.blocked, DETECT_TIMEOUT)
    return latencies, missed


def _starvation() -> tuple[float | None, str]:
    """One run of executor starvation: (latency or None, finding kind)."""
    since = len(DETECTOR.findings)
    ex = ThreadPoolExecutor(max_workers=1)
    box: dict[str, Any] = {}

    def inner() -> int:
        return 1

    def outer() -> int:
        fut: Future[int] = ex.submit(inner)
        box["inner"] = fut
        box["stamp"] = time.monotonic()
        return fut.result()  # the only worker is this one: starvation

    outer_future = ex.submit(outer)
    found = wait_for(lambda: _new_deadlock(since) is not None, DETECT_TIMEOUT)
    seen = time.monotonic()
    # Resolve it from outside whatever happened, so the worker ends.
    wait_for(lambda: "inner" in box, DETECT_TIMEOUT)
    inner_future = box.get("inner")
    if inner_future is not None:
        inner_future.cancel()
    with contextlib.suppress(Exception):
        outer_future.exception(DETECT_TIMEOUT)
    ex.shutdown(wait=False)
    if not found or "stamp" not in box:
        return None, ""
    finding = _new_deadlock(since)
    return seen - box["stamp"], str(finding.kind)


def run(quick: bool) -> Section:
    runs = 5 if quick else 25
    defaults = Config()
    limit = 2 * defaults.interval + 0.05
    section = Section(
        key="latency",
        title=(
            f"Detection latency (interval {defaults.interval} s, threshold "
            f"{defaults.threshold} s): last thread blocked -> finding, ms"
        ),
        columns=[
            ("scenario", "scenario"),
            ("median_ms", "median ms"),
            ("min_ms", "min ms"),
            ("max_ms", "max ms"),
            ("runs", "runs"),
            ("missed", "missed"),
            ("detected", "detected"),
        ],
        params={
            "runs": runs,
            "interval_s": defaults.interval,
            "threshold_s": defaults.threshold,
            "target_ms": round(limit * 1e3, 1),
        },
    )
    deadlockwatch.enable(on_deadlock="raise-all", text=False)
    try:
        # Warm up (the watcher imports networkx when it starts).
        _measure(abba, 1)
        scenarios: list[tuple[str, Scenario]] = [
            ("ABBA (2 threads, 2 Locks)", abba),
            ("4-thread cycle (4 Locks)", four_cycle),
            ("semaphore pool exhaustion (2 threads, 2 units)", pool_exhaustion),
        ]
        for name, scenario in scenarios:
            lat, missed = _measure(scenario, runs)
            section.rows.append(
                {
                    "scenario": name,
                    "median_ms": round(median(lat) * 1e3, 1) if lat else None,
                    "min_ms": round(min(lat) * 1e3, 1) if lat else None,
                    "max_ms": round(max(lat) * 1e3, 1) if lat else None,
                    "runs": runs,
                    "missed": missed,
                    "detected": bool(lat),
                }
            )
        first, kind = _starvation()
        if first is None:
            section.rows.append(
                {
                    "scenario": "executor starvation: not detected (nothing within 2 s)",
                    "median_ms": None,
                    "min_ms": None,
                    "max_ms": None,
                    "runs": 1,
                    "missed": 1,
                    "detected": False,
                }
            )
        else:
            lat = [first]
            missed = 0
            for _ in range(runs - 1):
                value, _kind = _starvation()
                if value is None:
                    missed += 1
                else:
                    lat.append(value)
            section.rows.append(
                {
                    "scenario": f"executor starvation ({kind})",
                    "median_ms": round(median(lat) * 1e3, 1),
                    "min_ms": round(min(lat) * 1e3, 1),
                    "max_ms": round(max(lat) * 1e3, 1),
                    "runs": runs,
                    "missed": missed,
                    "detected": True,
                }
            )
    finally:
        deadlockwatch.disable()
    section.notes.append(
        f"target: median <= 2 x interval + 50 ms = {limit * 1e3:.0f} ms; the watcher analyses "
        "a wait once it is older than the threshold, then confirms on a second look 20 ms later."
    )
    return section
