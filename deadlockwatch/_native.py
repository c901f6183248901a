"""The untracked primitives, captured before anything is patched.

Everything deadlockwatch uses for its own synchronisation comes from here, so
that the detector never waits on, or reports, a lock of its own making.
"""

from __future__ import annotations

import _thread
import sys
import threading
import time

allocate_lock = _thread.allocate_lock
RawRLock = _thread.RLock
get_ident = _thread.get_ident
start_new_thread = _thread.start_new_thread
ThreadLocal = _thread._local
monotonic = time.monotonic
current_frames = sys._current_frames
getframe = sys._getframe

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
