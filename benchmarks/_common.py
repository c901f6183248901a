"""Shared helpers: the section record, interleaved timing, statistics."""

from __future__ import annotations

import statistics
import time
import timeit
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

Row = dict[str, Any]


@dataclass
class Section:
    """One section of results: a title, the columns to print and the rows.

    Every row is a flat dict; ``columns`` names the keys printed (in order)
    with their headers.  ``params`` records the sizes used.
    """

    key: str
    title: str
    columns: list[tuple[str, str]]
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "columns": [list(c) for c in self.columns],
            "rows": self.rows,
            "notes": self.notes,
            "params": self.params,
        }


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def ratio(value: float, base: float) -> float:
    return round(value / base, 3) if base > 0 else float("nan")


def interleave(candidates: dict[str, Callable[[], float]], repeat: int) -> dict[str, list[float]]:
    """Call each candidate once per round, ``repeat`` rounds, alternating the
    order of the candidates between rounds (so neither always goes first).
    Each call returns one measurement; all of them are returned, by name."""
    results: dict[str, list[float]] = {name: [] for name in candidates}
    names = list(candidates)
    for i in range(repeat):
        for name in names if i % 2 == 0 else reversed(names):
            results[name].append(candidates[name]())
    return results


def ns_per_op(stmt: str, glb: dict[str, Any], number: int, setup: str = "pass") -> float:
    """Nanoseconds per execution of ``stmt`` (inlined by timeit into its loop,
    so no extra function call is measured)."""
    timer = timeit.Timer(stmt, setup=setup, globals=glb)
    return timer.timeit(number) / number * 1e9


def calibrate(stmt: str, glb: dict[str, Any], seconds: float, setup: str = "pass") -> int:
    """How many executions of ``stmt`` take about ``seconds`` (at least 1,000)."""
    timer = timeit.Timer(stmt, setup=setup, globals=glb)
    n = 1000
    while True:
        t = timer.timeit(n)
        if t >= seconds / 4 or n >= 10_000_000:
            return max(1000, int(n * seconds / max(t, 1e-9)))
        n *= 4


def wait_for(predicate: Callable[[], bool], timeout: float, step: float = 0.001) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(step)
    return True
