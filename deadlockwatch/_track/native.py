"""The untracked primitives, captured before anything is patched.

Everything deadlockwatch uses for its own synchronisation comes from here, so
that the detector never waits on, or reports, a lock of its own making.
"""

from __future__ import annotations

import _thread
import sys
import threading
import time
from typing import Any

allocate_lock = _thread.allocate_lock
RawRLock = _thread.RLock
get_ident = _thread.get_ident
get_native_id = _thread.get_native_id
#: How many threads `_thread` started are alive (threading's among them).
thread_count = _thread._count
start_new_thread = _thread.start_new_thread
ThreadLocal = _thread._local
monotonic = time.monotonic
current_frames = sys._current_frames
getframe = sys._getframe


def caller_frame(depth: int = 0) -> Any:
    """``sys._getframe(depth)`` as if called where this is called, or None when
    the stack is not that deep: a thread started from C on one of our methods
    (``_thread.start_new_thread(lock.acquire, ())``) has no Python frame
    below it."""
    try:
        return getframe(depth + 1)
    except ValueError:
        return None


#: The threading factories exactly as they were before any patching.
ORIGINAL_LOCK = threading.Lock
ORIGINAL_RLOCK = threading.RLock
ORIGINAL_SEMAPHORE = threading.Semaphore
ORIGINAL_BOUNDED_SEMAPHORE = threading.BoundedSemaphore
ORIGINAL_CONDITION = threading.Condition
TIMEOUT_MAX = _thread.TIMEOUT_MAX


class RawCondition(threading.Condition):
    """A Condition whose waits are never tracked (for the semaphores' own
    counting): threading's ``Condition.wait`` as it was before patching."""

    wait = threading.Condition.wait
    wait_for = threading.Condition.wait_for


def start_joinable(function: Any) -> Any:
    """Start ``function`` in a bare thread; return a ``join(timeout)`` for it
    that returns once the thread is gone (its OS thread included, as far as
    the interpreter can tell), or None where the interpreter offers no way.
    """
    if hasattr(_thread, "start_joinable_thread"):  # 3.13+
        handle = _thread.start_joinable_thread(function, daemon=True)

        def join(timeout: float) -> None:
            handle.join(timeout)

        return join
    if hasattr(_thread, "_set_sentinel"):  # 3.12 and earlier
        box: list[Any] = []
        started = allocate_lock()
        started.acquire()

        def run() -> None:
            box.append(_thread._set_sentinel())  # type: ignore[attr-defined]  # released when this thread's state is gone
            started.release()
            function()

        start_new_thread(run, ())

        def join_sentinel(timeout: float) -> None:  # may be called again
            if started.acquire(True, timeout):
                started.release()
                if box and box[0].acquire(True, timeout):
                    box[0].release()

        return join_sentinel
    start_new_thread(function, ())
    return None
