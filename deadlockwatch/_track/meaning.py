"""What a blocked ``Condition.wait`` means: read from the waiting thread's
own frames when it starts to block (`meaning`), so that ``Event.wait``,
``Queue.get``/``put``/``join``, ``Future.result``, ``futures.wait`` and
``as_completed`` pay nothing on their fast paths.  Runs in the application's
thread, and only on a wait that blocks.
"""

from __future__ import annotations

import threading
from types import FrameType
from typing import Any

from deadlockwatch._track import native as _native
from deadlockwatch._track.state import internal_file
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
