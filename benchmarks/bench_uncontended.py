"""Section 1: uncontended cost of tracked primitives, as ratios against the raw ones.

Raw and tracked (lock order off and on) are timed in the same run,
interleaved, best of several repeats, so the ratio holds on a noisy machine
even when the ns do not.  The statement is inlined in timeit's loop (no
extra function call), so the ns are those of the statement itself plus
timeit's loop (reported as ``loop_ns``).

The "bare Python wrapper" rows time a class whose methods only forward to a
raw lock, tracking nothing: the floor of any pure-Python replacement.  The
"(Python path)" rows time the tracked Lock and RLock with their hot path in
Python (``PURE_LOCK``/``PURE_RLOCK``: what free-threaded builds and
``DEADLOCKWATCH_PURE=1`` use) where the C one is built.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from deadlockwatch._track import native as _native
from deadlockwatch._track import primitives as _primitives
from deadlockwatch._track.primitives import (
    ACCELERATED,
    PURE_LOCK,
    PURE_RLOCK,
    TrackedLock,
    TrackedRLock,
    TrackedSemaphore,
)
from deadlockwatch._watch.watcher import DETECTOR

from ._common import Row, Section, calibrate, interleave, ns_per_op, ratio


class BareWrapper:
    """Forwards to a raw lock and does nothing else."""

    __slots__ = ("_raw",)

    def __init__(self) -> None:
        self._raw = _native.allocate_lock()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        return bool(self._raw.acquire(blocking, timeout))

    def release(self) -> None:
        self._raw.release()

    def __enter__(self) -> bool:
        return bool(self._raw.acquire())

    def __exit__(self, *exc: object) -> None:
        self._raw.release()


#: name -> (raw factory, tracked factory)
PAIRS: dict[str, tuple[Callable[[], Any], Callable[[], Any]]] = {
    "Lock": (_native.ORIGINAL_LOCK, TrackedLock),
    "RLock": (_native.ORIGINAL_RLOCK, TrackedRLock),
    "Semaphore": (_native.ORIGINAL_SEMAPHORE, TrackedSemaphore),
}
if ACCELERATED:  # else the rows above are the Python path already
    PAIRS["Lock (Python path)"] = (_native.ORIGINAL_LOCK, PURE_LOCK)
    PAIRS["RLock (Python path)"] = (_native.ORIGINAL_RLOCK, PURE_RLOCK)

OPERATIONS = {
    "with": "with lock: pass",
    "acquire/release": "lock.acquire(); lock.release()",
}
NESTED = "with outer, inner: pass"


def _set_order(on: bool) -> None:
    _primitives.learn_order = DETECTOR.learn_order if on else None


def _timed(stmt: str, glb: dict[str, Any], number: int, order: bool | None) -> Callable[[], float]:
    def run() -> float:
        if order is not None:
            _set_order(order)
        try:
            return ns_per_op(stmt, glb, number)
        finally:
            _set_order(False)

    return run


def _rows_for(
    name: str,
    op: str,
    stmt: str,
    raw: dict[str, Any],
    tracked: dict[str, Any],
    budget: float,
    repeat: int,
) -> list[Row]:
    number = calibrate(stmt, raw, budget)
    results = interleave(
        {
            "raw": _timed(stmt, raw, number, None),
            "off": _timed(stmt, tracked, number, False),
            "on": _timed(stmt, tracked, number, True),
        },
        repeat,
    )
    best = {k: min(v) for k, v in results.items()}
    return [
        {
            "primitive": name,
            "operation": op,
            "lock_order": mode,
            "raw_ns": round(best["raw"], 1),
            "tracked_ns": round(best[mode], 1),
            "ratio": ratio(best[mode], best["raw"]),
        }
        for mode in ("off", "on")
    ]


def run(quick: bool) -> Section:
    repeat = 3 if quick else 7
    budget = 0.01 if quick else 0.08
    section = Section(
        key="uncontended",
        title="Uncontended: ns per operation, best of repeats, tracked / raw",
        columns=[
            ("primitive", "primitive"),
            ("operation", "operation"),
            ("lock_order", "lock order"),
            ("raw_ns", "raw ns"),
            ("tracked_ns", "tracked ns"),
            ("ratio", "ratio"),
        ],
        params={"repeat": repeat, "seconds_per_timing": budget},
    )
    _set_order(False)
    for name, (raw_factory, tracked_factory) in PAIRS.items():
        for op, stmt in OPERATIONS.items():
            section.rows += _rows_for(
                name,
                op,
                stmt,
                {"lock": raw_factory()},
                {"lock": tracked_factory()},
                budget,
                repeat,
            )
    for name, (raw_factory, tracked_factory) in list(PAIRS.items())[:2]:
        raw = {"outer": raw_factory(), "inner": raw_factory()}
        tracked = {"outer": tracked_factory(), "inner": tracked_factory()}
        _set_order(True)
        exec(NESTED, dict(tracked))  # learn the order once: what follows is the steady state
        _set_order(False)
        section.rows += _rows_for(f"2 {name}s nested", "with", NESTED, raw, tracked, budget, repeat)
    # The floor: a wrapper that tracks nothing (lock order does not apply).
    for op, stmt in OPERATIONS.items():
        glb_raw = {"lock": _native.ORIGINAL_LOCK()}
        glb_bare = {"lock": BareWrapper()}
        number = calibrate(stmt, glb_raw, budget)
        res = interleave(
            {
                "raw": _timed(stmt, glb_raw, number, None),
                "bare": _timed(stmt, glb_bare, number, None),
            },
            repeat,
        )
        section.rows.append(
            {
                "primitive": "Lock: bare Python wrapper (floor)",
                "operation": op,
                "lock_order": "n/a",
                "raw_ns": round(min(res["raw"]), 1),
                "tracked_ns": round(min(res["bare"]), 1),
                "ratio": ratio(min(res["bare"]), min(res["raw"])),
            }
        )
    loop = min(ns_per_op("pass", {}, calibrate("pass", {}, budget)) for _ in range(repeat))
    section.params["loop_ns"] = round(loop, 1)
    section.notes.append(
        f"timeit's own loop costs {loop:.1f} ns per iteration and is included in every ns; "
        "the bare-wrapper rows show what any pure-Python lock costs before tracking anything."
    )
    return section
