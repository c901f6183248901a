"""Installing and removing the tracked factories in ``threading`` (with wrapt).

Only names looked up at call time are reached: ``threading.Lock()`` made
after `patch()` is tracked, a name bound earlier by ``from threading import
Lock`` is not.  Condition, Event, Barrier, Semaphore and queue.Queue look up
``Lock``/``RLock`` in their module when they are built, so they get tracked
locks too.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from . import _native
from ._primitives import TrackedBoundedSemaphore, TrackedLock, TrackedRLock, TrackedSemaphore
from ._state import internal_file

internal_file(__file__)

_TARGETS: tuple[tuple[str, Callable[..., Any], Any], ...] = (
    ("Lock", TrackedLock, _native.ORIGINAL_LOCK),
    ("RLock", TrackedRLock, _native.ORIGINAL_RLOCK),
    ("Semaphore", TrackedSemaphore, _native.ORIGINAL_SEMAPHORE),
    ("BoundedSemaphore", TrackedBoundedSemaphore, _native.ORIGINAL_BOUNDED_SEMAPHORE),
)

_installed: dict[str, Any] = {}


def _factory(tracked: Callable[..., Any]) -> Callable[..., Any]:
    def make(
        wrapped: Callable[..., Any], instance: object, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        try:
            return tracked(*args, **kwargs)
        except TypeError:
            pass
        # Arguments the tracked type does not take: the original's own answer
        # (its error, with its message).
        return wrapped(*args, **kwargs)

    return make


def patch() -> None:
    """Make ``threading``'s lock factories create tracked primitives (idempotent)."""
    # Imported here: wrapt 2 imports asyncio, too slow for `import deadlockwatch`.
    from wrapt import FunctionWrapper

    for name, tracked, original in _TARGETS:
        if name in _installed:
            continue
        current = getattr(threading, name)
        if current is not original:
            # Someone else's wrapper: wrap it, and put it back on unpatch.
            original = current
        wrapper = FunctionWrapper(original, _factory(tracked))
        setattr(threading, name, wrapper)
        _installed[name] = (wrapper, original)


def unpatch() -> None:
    """Put the originals back (only where our wrapper is still in place)."""
    for name, (wrapper, original) in list(_installed.items()):
        if getattr(threading, name) is wrapper:
            setattr(threading, name, original)
        del _installed[name]


def is_patched() -> bool:
    return bool(_installed)
