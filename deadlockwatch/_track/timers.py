"""An event loop's pending timers, read without running the loop's code.

asyncio's loop keeps them in ``loop._scheduled`` (``TimerHandle``s with
``_callback``, ``_args``, ``_when``, ``_cancelled``).  uvloop's loop is a C
(Cython) object with no Python attributes, but the collector sees what it
holds: its referents include the set of its pending ``TimerHandle``s (a
handle leaves it when it runs or is cancelled), and each handle's own
referents are, in the order uvloop declares them, its callback, its
arguments, ..., and its deadline in the loop's time (libuv's monotonic
clock, in milliseconds: `time.monotonic` to the millisecond).  Those shapes
are checked on each read; a loop whose timers cannot be read gives None,
and its callers fall back on what they can read (a task's await chain).

Used from the watcher's thread (`_watch.tasks`) and, for a new lock order,
from the loop's own thread (`_track.aio`); either way a read of one list
or set, copied, as for every other structure the watcher reads.
"""

from __future__ import annotations

import gc
from typing import Any, NamedTuple


class Timer(NamedTuple):
    """One pending timer: what it will call, with what, and when (loop time)."""

    callback: Any
    args: tuple[Any, ...]
    when: float
    handle: Any


def pending(loop: Any) -> list[Timer] | None:
    """The timers of ``loop`` that are neither cancelled nor run yet; None
    when its timers cannot be read."""
    try:
        scheduled = loop._scheduled
    except Exception:
        return _uvloop(loop)
    try:
        handles = list(scheduled)
    except Exception:
        return None
    out: list[Timer] = []
    for h in handles:
        if getattr(h, "_cancelled", True):
            continue
        when = getattr(h, "_when", None)
        if not isinstance(when, (int, float)):
            continue
        args = getattr(h, "_args", ()) or ()
        out.append(Timer(getattr(h, "_callback", None), tuple(args), float(when), h))
    return out


def _is_uv_timer(obj: Any) -> bool:
    t = type(obj)
    return t.__name__ == "TimerHandle" and t.__module__.startswith("uvloop")


def _uvloop(loop: Any) -> list[Timer] | None:
    if not type(loop).__module__.startswith("uvloop"):
        return None
    try:
        refs = gc.get_referents(loop)
    except Exception:
        return None
    sets: list[list[Any]] = []
    for ref in refs:
        if type(ref) is set:
            try:  # copied first: the loop's thread may change it meanwhile
                sets.append(list(ref))
            except RuntimeError:
                return None
    timers = [s for s in sets if any(_is_uv_timer(h) for h in s)]
    if len(timers) > 1 or (timers and not all(_is_uv_timer(h) for h in timers[0])):
        return None  # not the shape this was written for
    out: list[Timer] = []
    for h in timers[0] if timers else ():
        fields = gc.get_referents(h)
        # callback, args (None for none), its UVTimer, the loop, its
        # context, debug info, when
        if len(fields) < 3 or not callable(fields[0]):
            return None
        args, when = fields[1], fields[-1]
        if args is None:
            args = ()
        if not isinstance(args, tuple) or not isinstance(when, float):
            return None
        out.append(Timer(fields[0], args, when, h))
    return out
