"""Uncontended cost of tracked primitives, as ratios against the raw ones.

    python benchmarks/bench_uncontended.py [--json OUT] [--number N]

Raw and tracked are timed in the same run, interleaved, best of several
repeats, so the ratio holds on a noisy machine even when the ns do not.
"""

from __future__ import annotations

import argparse
import json
import sys
import timeit
from collections.abc import Callable
from typing import Any

from deadlockwatch import _native
from deadlockwatch._primitives import TrackedLock, TrackedRLock, TrackedSemaphore

PAIRS: dict[str, tuple[Callable[[], Any], Callable[[], Any]]] = {
    "Lock": (_native.ORIGINAL_LOCK, TrackedLock),
    "RLock": (_native.ORIGINAL_RLOCK, TrackedRLock),
    "Semaphore": (_native.ORIGINAL_SEMAPHORE, TrackedSemaphore),
}


def _with(lock: Any) -> None:
    with lock:
        pass


def _acq_rel(lock: Any) -> None:
    lock.acquire()
    lock.release()


def _nested(pair: Any) -> None:
    outer, inner = pair
    with outer, inner:
        pass


def _time_pair(
    raw: Any, tracked: Any, op: Callable[[Any], None], number: int, repeat: int
) -> tuple[float, float]:
    best = {"raw": float("inf"), "tracked": float("inf")}
    for _ in range(repeat):
        for label, lock in (("raw", raw), ("tracked", tracked)):
            t = timeit.timeit(lambda lock=lock, op=op: op(lock), number=number)
            best[label] = min(best[label], t / number * 1e9)
    return best["raw"], best["tracked"]


def measure_order(number: int, repeat: int) -> list[dict[str, Any]]:
    """Two nested Locks (a known order): lock-order detection off, then on."""
    from deadlockwatch import _primitives
    from deadlockwatch._detector import DETECTOR

    rows = []
    for mode in ("off", "on"):
        _primitives.learn_order = DETECTOR.learn_order if mode == "on" else None
        raw = (_native.ORIGINAL_LOCK(), _native.ORIGINAL_LOCK())
        tracked = (TrackedLock(), TrackedLock())
        _nested(tracked)  # learn the order once: what follows is the steady state
        r, t = _time_pair(raw, tracked, _nested, number, repeat)
        rows.append(
            {
                "primitive": f"2 Locks nested, lock order {mode}",
                "operation": "with",
                "raw_ns": round(r, 1),
                "tracked_ns": round(t, 1),
                "ratio": round(t / r, 2),
            }
        )
    _primitives.learn_order = None
    return rows


def measure(number: int, repeat: int) -> list[dict[str, Any]]:
    rows = []
    for name, (raw_factory, tracked_factory) in PAIRS.items():
        for op_name, op in (("with", _with), ("acquire/release", _acq_rel)):
            raw, tracked = raw_factory(), tracked_factory()
            best = {"raw": float("inf"), "tracked": float("inf")}
            for _ in range(repeat):
                for label, lock in (("raw", raw), ("tracked", tracked)):
                    t = timeit.timeit(lambda lock=lock, op=op: op(lock), number=number)
                    best[label] = min(best[label], t / number * 1e9)
            rows.append(
                {
                    "primitive": name,
                    "operation": op_name,
                    "raw_ns": round(best["raw"], 1),
                    "tracked_ns": round(best["tracked"], 1),
                    "ratio": round(best["tracked"] / best["raw"], 2),
                }
            )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", help="also write the rows as JSON to this file")
    parser.add_argument("--number", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rows = measure(args.number, args.repeat) + measure_order(args.number, args.repeat)
    print(f"Python {sys.version.split()[0]}  (ns per operation, best of {args.repeat})")
    print(f"{'primitive':<32} {'operation':<16} {'raw':>8} {'tracked':>8} {'ratio':>6}")
    for r in rows:
        print(
            f"{r['primitive']:<32} {r['operation']:<16} {r['raw_ns']:>8} "
            f"{r['tracked_ns']:>8} {r['ratio']:>6}"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"python": sys.version, "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
