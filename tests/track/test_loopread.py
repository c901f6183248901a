"""`_track.loopread`: an event loop's queues read without running its code
(asyncio's by attribute, uvloop's through the collector)."""

from __future__ import annotations

import asyncio
import collections
from typing import Any

import pytest

from deadlockwatch._track import loopread


def _read_while_running(new_loop: Any) -> list[Any]:
    seen: list[Any] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        seen.append((loopread.pending(loop), loopread.activity(loop)))
        timer = loop.call_later(30, print, "never")
        handle = loop.call_soon(print, "soon")
        seen.append((loopread.pending(loop), loopread.activity(loop)))
        timer.cancel()
        handle.cancel()
        seen.append((loopread.pending(loop), loopread.activity(loop)))

    loop = new_loop()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    return seen


@pytest.mark.parametrize("kind", ["asyncio", "uvloop"])
def test_timers_and_activity_read_off_a_running_loop(kind: str) -> None:
    """A pending timer is read with its callback, arguments and deadline;
    a cancelled one is gone; a ready callback's handle is read.  Nothing else of
    the loop is pending or ready here."""
    if kind == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        new_loop = uvloop.new_event_loop
    else:
        new_loop = asyncio.new_event_loop
    (before, b_act), (during, d_act), (after, a_act) = _read_while_running(new_loop)
    assert before == [] and after == [], (before, after)
    (timer,) = during or [None]
    assert timer is not None and timer.callback is print and timer.args == ("never",)
    assert timer.when > 0
    assert d_act is not None and [t.callback for t in d_act.timers] == [print], d_act
    (ready,) = d_act.ready or [None]
    assert type(ready).__name__ == "Handle", d_act
    assert b_act is not None and (b_act.timers, b_act.io, b_act.signal_handlers) == ([], [], [])
    assert a_act is not None and (a_act.timers, a_act.ready) == ([], []), a_act


def test_a_loop_of_another_shape_cannot_be_read() -> None:
    """A loop in C whose fields are not in the order uvloop declares them is
    one that cannot be read (None), never one with nothing pending."""

    class Loop:
        pass

    Loop.__module__ = "uvloop.loop"
    loop = Loop()
    loop.queue = collections.deque()  # type: ignore[attr-defined]
    loop.timers = set()  # type: ignore[attr-defined]
    assert loopread.pending(loop) is None
    assert loopread.activity(loop) is None
    assert loopread.loop_thread(loop) is None
