"""What a blocked ``Condition.wait`` means: read from the waiting thread's
own frames (`meaning`), so that ``Event.wait``, ``Queue.get``/``put``/``join``,
``Future.result``, ``futures.wait`` and ``as_completed`` pay nothing on their
fast paths.

A blocking wait keeps only its Condition and the frame that called ``wait``
(`ConditionWait`); what it means, and where it was made, are read from those
frames the first time someone asks (the watcher, once the wait is older than
its threshold; the waiting thread itself when a timed wait times out), while
the thread is still blocked in it, so its frames are as they were when it
blocked.  On a free-threaded build, where reading another thread's running
frames is not safe, the waiting thread reads them as it blocks.
"""

from __future__ import annotations

import os
import sys
import threading
from types import FrameType
from typing import Any

from deadlockwatch._model import Site
from deadlockwatch._track import native as _native
from deadlockwatch._track.state import _OPEN, ThreadRecord, WaitRecord, frame_site, internal_file
from deadlockwatch._track.views import (
    _PENDING,
    _RUNNING,
    BarrierView,
    EventView,
    FutureSetView,
    FutureView,
    QueueView,
    SemaphoreView,
    View,
)

internal_file(__file__)

#: The modules whose frames stand between a wait and what it means: the
#: wrappers (`waits`) and wrapt's.
_WRAPPERS = "deadlockwatch._track.waits"


def meaning(cond: Any, frame: FrameType | None) -> View:
    """The resource a ``Condition.wait`` called from ``frame`` stands for."""
    view: View | None = None
    f = frame
    for _ in range(8):
        if f is None:
            break
        module = f.f_globals.get("__name__", "")
        name = f.f_code.co_name
        if module == _WRAPPERS or module.startswith("wrapt"):
            f = f.f_back
            continue
        if module == "threading":
            if name == "wait_for":
                f = f.f_back
                continue
            this = f.f_locals.get("self")
            if view is None and isinstance(this, threading.Barrier):
                return BarrierView(this)
            if view is None and isinstance(this, _native.ORIGINAL_SEMAPHORE):
                # One made before enable(), so untracked: a plain signal.
                return SemaphoreView(this)
            if view is None and isinstance(this, threading.Event) and name == "wait":
                # Maybe concurrent.futures.wait()'s own Event: look one further.
                view = EventView(this)
                f = f.f_back
                continue
            break
        if module == "queue" and name in ("get", "put", "join") and view is None:
            this = f.f_locals.get("self")
            if this is not None and hasattr(this, "_qsize"):
                return QueueView(this, name)
            break
        if module == "concurrent.futures._base":
            local = f.f_locals
            if name in ("result", "exception") and view is None:
                return FutureView(local.get("self"))
            if name == "wait" and "fs" in local:
                need_all = local.get("return_when") == "ALL_COMPLETED"
                return FutureSetView(_not_done(local["fs"]), need_all)
            if name == "as_completed" and "pending" in local:
                return FutureSetView(_not_done(local["pending"]), False)
        break
    return view if view is not None else View(cond)


def _not_done(futures: Any) -> list[Any]:
    try:
        return [f for f in list(futures) if f._state in (_PENDING, _RUNNING)]
    except Exception:
        return []


#: False on a free-threaded build (reading another thread's running frames
#: races with it there): a `ConditionWait` is resolved as it starts.
LAZY: bool = bool(getattr(sys, "_is_gil_enabled", lambda: True)())

#: Taken only to resolve a registered `ConditionWait` lazily (by whoever
#: reads it first: the watcher, `dump`, the waiting thread at a timeout),
#: never on the hot path nor on a free-threaded build, so that every reader
#: gets the same view.  Reentrant: a signal handler
#: run while its thread resolves may resolve a wait of its own.
_resolving = _native.RawRLock()

#: How long a reader waits for `_resolving` before it reads without it.
RESOLVE_WAIT = 0.1


def _after_fork_in_child() -> None:
    # A thread of the parent may have held it at the fork: the child's
    # threads (a timed wait that times out reads itself) would wait forever.
    global _resolving
    _resolving = _native.RawRLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class ConditionWait(WaitRecord):
    """The `WaitRecord` of a blocking ``Condition.wait``, whose ``resource``
    (`meaning`) and ``site`` are read from the caller's frame when first read.

    Every blocking wait makes one (each turn of a ping-pong): working out the
    meaning as it starts cost about as much as the rest of the wait."""

    __slots__ = ("_cond", "_frame", "_meaning", "_where")
    _cond: Any
    #: The frame that called ``wait``, until what the wait means is read.
    _frame: FrameType | None
    _meaning: Any
    _where: Site | None

    def __init__(self, *args: object, **kwargs: object) -> None:
        # Made only by `condition_wait_record`, which writes the fields
        # without the class call; WaitRecord's __init__ would take these
        # arguments for others.
        raise TypeError("a ConditionWait is made by condition_wait_record()")

    def _resolve(self) -> None:
        # Bounded: the watcher never waits long on a lock another thread
        # holds (one stuck inside a resolution: a signal handler run there
        # that blocked).  Without it, this reader reads the frame itself; the
        # views are right, only maybe not the same object as another
        # reader's.
        locked = _resolving.acquire(True, RESOLVE_WAIT)
        try:
            frame = self._frame
            if frame is None:
                return  # resolved meanwhile
            self._meaning = meaning(self._cond, frame)
            self._where = frame_site(frame)
            self._frame = None
        finally:
            if locked:
                _resolving.release()

    @property
    def resource(self) -> Any:
        if self._frame is not None:
            self._resolve()
        return self._meaning

    @resource.setter
    def resource(self, value: Any) -> None:
        if self._frame is not None:
            self._resolve()
        self._meaning = value

    @property
    def site(self) -> Site | None:
        if self._frame is not None:
            self._resolve()
        return self._where

    @site.setter
    def site(self, value: Site | None) -> None:
        if self._frame is not None:
            self._resolve()
        self._where = value


_new = object.__new__


def _settle(wait: ConditionWait, cond: Any, frame: FrameType | None) -> None:
    """Read what a wait means as it starts (no frame to read later, or a
    free-threaded build): it is not registered yet, so no other thread
    reads it, and no lock is taken."""
    wait._meaning = meaning(cond, frame)
    wait._where = frame_site(frame)
    wait._frame = None


def condition_wait_record(
    rec: ThreadRecord, cond: Any, timeout: float | None, frame: FrameType | None, waiter: Any
) -> ConditionWait:
    """A new `ConditionWait`: its fields (`WaitRecord`'s, the resource and
    site slots left unused: the properties stand for them) written without
    a class call, whose ``__init__`` goes through the type's slot wrapper
    (about 1,000 instructions more, on every blocking wait)."""
    wait: ConditionWait = _new(ConditionWait)
    wait.rec = rec
    wait.timeout = timeout
    wait.since = _native.monotonic()
    wait.interrupt = None
    wait.gate = _OPEN
    wait.reported = False
    wait.self_wait = False
    wait.polled_since = None
    wait.waiter = waiter
    wait._cond = cond
    wait._frame = frame
    if frame is None or not LAZY:
        _settle(wait, cond, frame)
    return wait
