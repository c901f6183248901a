"""Section 8: multiprocessing's locks (shared across processes), tracked vs raw.

Uncontended: ``with lock: pass`` and ``lock.acquire(); lock.release()`` on
fork-context ``Lock``, ``RLock`` and ``Semaphore``, raw vs tracked, in the
same run, interleaved, best of repeats.  "raw" is an object made before the
patch, timed while ``SemLock``'s class-level ``__enter__``/``__exit__`` are
the originals again; "tracked" one made after, with the patch in place (the
per-process ``<pid>.holds`` file is made before timing: its first write is a
one-off).  Taking the first unit of a tracked Lock or RLock also writes the
holder into that mapped file, and releasing it clears its state byte: the
"no .holds" column is the tracked lock with those two calls replaced by a
no-op, to show their share (not applicable to a Semaphore).

Publishing: `_shared.tick` called directly (the detector's own watcher
sleeps: interval 1 hour) in a process where nothing shared is held or
awaited (baseline), then with one thread blocked past the threshold on a
shared Lock that another thread of the process holds: the tick builds the
process's snapshot, compares it with what it last wrote, and analyses the
run directory (steady: nothing changed, nothing rewritten), and the same
with the file written every tick (``rewrite``), what a process pays while
what it holds and awaits keeps changing.  Median of the ticks, in us.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import deadlockwatch
from deadlockwatch._processes import ledger as _ledger
from deadlockwatch._processes import rundir as _rundir
from deadlockwatch._processes import semlock as _semlock
from deadlockwatch._processes import shared as _shared
from deadlockwatch._watch.watcher import DETECTOR

from ._common import Row, Section, calibrate, interleave, median, ns_per_op, ratio

OPERATIONS = {
    "with": "with lock: pass",
    "acquire/release": "lock.acquire(); lock.release()",
}
TYPES = ("Lock", "RLock", "Semaphore")


def _patched(on: bool) -> None:
    """SemLock's class-level enter/exit: tracked, or the originals."""
    cls = _semlock._cls
    cls.__enter__ = _semlock._enter if on else _semlock._originals["__enter__"]
    cls.__exit__ = _semlock._exit if on else _semlock._originals["__exit__"]


def _no_file(*args: object) -> None:
    pass


def _timed(
    stmt: str, glb: dict[str, Any], number: int, tracked: bool, file: bool = True
) -> Callable[[], float]:
    def run() -> float:
        _patched(tracked)
        real = _ledger.held, _ledger.released
        if not file:
            _ledger.held = _ledger.released = _no_file  # type: ignore[assignment]
        try:
            return ns_per_op(stmt, glb, number)
        finally:
            _patched(True)
            _ledger.held, _ledger.released = real  # type: ignore[assignment]

    return run


def _uncontended(
    raw: dict[str, Any], tracked: dict[str, Any], repeat: int, budget: float
) -> list[Row]:
    rows = []
    for name in TYPES:
        for op, stmt in OPERATIONS.items():
            r, t = {"lock": raw[name]}, {"lock": tracked[name]}
            _patched(False)
            number = calibrate(stmt, r, budget)
            _patched(True)
            res = interleave(
                {
                    "raw": _timed(stmt, r, number, False),
                    "tracked": _timed(stmt, t, number, True),
                    "no file": _timed(stmt, t, number, True, file=False),
                },
                repeat,
            )
            best_raw, best, bare = (min(res[k]) for k in ("raw", "tracked", "no file"))
            rows.append(
                {
                    "case": f"mp.{name} {op}",
                    "raw": round(best_raw, 1),
                    "tracked": round(best, 1),
                    "no_file": round(bare, 1) if name != "Semaphore" else None,
                    "unit": "ns",
                    "ratio": ratio(best, best_raw),
                }
            )
    return rows


def _tick_us(ticks: int, rewrite: bool) -> float:
    samples = []
    for _ in range(ticks):
        if rewrite:
            _rundir.OWN.written = None
        t0 = time.perf_counter()
        _shared.tick(DETECTOR)
        samples.append((time.perf_counter() - t0) * 1e6)
    return median(samples)


def _publishing(ctx: Any, ticks: int) -> list[Row]:
    base = _tick_us(ticks, rewrite=False)
    lock = ctx.Lock()
    held, done = threading.Event(), threading.Event()

    def holder() -> None:
        with lock:
            held.set()
            done.wait(60)

    def waiter() -> None:
        if lock.acquire(True, 60):
            lock.release()

    threads = [threading.Thread(target=holder, daemon=True)]
    threads.append(threading.Thread(target=waiter, daemon=True))
    threads[0].start()
    held.wait(10)
    threads[1].start()
    try:
        time.sleep(DETECTOR.config.threshold * 2)
        _shared.tick(DETECTOR)  # the first: the file is written
        published = os.path.exists(os.path.join(_rundir.run_dir() or "", f"{os.getpid()}.json"))
        steady = _tick_us(ticks, rewrite=False)
        rewrite = _tick_us(ticks, rewrite=True)
    finally:
        done.set()
        for t in threads:
            t.join(10)
    if not published:
        raise RuntimeError("the blocked process published no snapshot")
    return [
        {
            "case": "tick, nothing shared",
            "raw": round(base, 1),
            "tracked": round(base, 1),
            "unit": "us",
            "ratio": 1.0,
        },
        {
            "case": "tick, blocked on an mp.Lock (steady)",
            "raw": round(base, 1),
            "tracked": round(steady, 1),
            "unit": "us",
            "ratio": ratio(steady, base),
        },
        {
            "case": "tick, blocked on an mp.Lock (rewrite)",
            "raw": round(base, 1),
            "tracked": round(rewrite, 1),
            "unit": "us",
            "ratio": ratio(rewrite, base),
        },
    ]


def run(quick: bool) -> Section:
    repeat = 3 if quick else 7
    budget = 0.01 if quick else 0.08
    ticks = 50 if quick else 500
    section = Section(
        key="shared",
        title="multiprocessing locks: tracked / raw (ns per operation), and a tick's cost (us)",
        columns=[
            ("case", "case"),
            ("raw", "raw / baseline"),
            ("tracked", "tracked"),
            ("no_file", "tracked, no .holds"),
            ("unit", "unit"),
            ("ratio", "ratio"),
        ],
        params={"repeat": repeat, "seconds_per_timing": budget, "ticks": ticks},
    )
    ctx = multiprocessing.get_context("fork")
    raw = {name: getattr(ctx, name)() for name in TYPES}
    deadlockwatch.enable(interval=3600, threshold=0.05, on_deadlock="report", report="-")
    try:
        tracked = {name: getattr(ctx, name)() for name in TYPES}
        with tracked["Lock"]:
            pass  # makes this process's mapped file
        section.rows += _uncontended(raw, tracked, repeat, budget)
        section.rows += _publishing(ctx, ticks)
    finally:
        deadlockwatch.disable()
    section.notes.append(
        "ns include timeit's loop; 'raw' mp locks go through multiprocessing's own "
        "Python __enter__/__exit__ for 'with'. Tick rows: raw = the tick with nothing shared."
    )
    return section
