"""Tracked waits beyond locks: Condition (and what is built on it: Event,
Barrier, queue.Queue, futures), ``Thread.join``, and executor futures.

They are patched in place on their classes (with wrapt's function wrappers),
so objects made before `enable()` are covered too; a module not imported yet
is patched right after it is (`_hook`).  Only a wait that really blocks pays:
``Condition.wait`` is itself the blocking path.  What the wait *means* (an
Event, a queue, a future) is read from the caller's frames at that moment,
so ``get``, ``put`` and ``result`` pay nothing on their fast paths.

The watcher sees each wait's resource through a *view* below: a small object
with the same ``_dw_*`` protocol as the tracked locks, saying who can
release or signal it.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import weakref
from collections.abc import Callable
from types import FrameType
from typing import Any, ClassVar

from deadlockwatch._model import SIGNAL_KIND, Site
from deadlockwatch._track import native as _native
from deadlockwatch._track import state as _state
from deadlockwatch._track.hook import when_imported
from deadlockwatch._track.state import (
    ThreadRecord,
    WaitRecord,
    current_record,
    frame_site,
    internal_file,
    wait_until,
)
from deadlockwatch._track.wrapping import wrapper_types

internal_file(__file__)

_STDLIB = os.path.dirname(threading.__file__)
# Waits are reported where the application called get(), result() or join(),
# not inside the standard library's own frames.
for _name in ("queue.py", "concurrent/futures/_base.py", "concurrent/futures/thread.py"):
    internal_file(os.path.join(_STDLIB, *_name.split("/")))

Holder = tuple[ThreadRecord | int, int, Site | None]


def created_site(lock: Any) -> Site | None:
    """Where a tracked primitive was made (None for an untracked one)."""
    created: Site | None = getattr(lock, "_created", None) or getattr(lock, "_dw_created", None)
    return created


class View:
    """How the watcher sees a waited-for object that is not a tracked lock.

    By default a signal: anything any running thread may notify or set.
    """

    _dw_kind = SIGNAL_KIND
    _dw_type = "Condition"
    _dw_verb = "notify"

    def __init__(self, obj: Any) -> None:
        self.obj = obj
        self._dw_key = id(obj)
        self._dw_id = id(obj)

    @property
    def _dw_created(self) -> Site | None:
        return created_site(getattr(self.obj, "_lock", None))

    def _dw_holders(self) -> list[Holder]:
        return []

    def _dw_free(self) -> int:
        return 0

    def _dw_owner_bound(self) -> bool:
        return False

    def _dw_detail(self) -> str:
        return ""

    def _dw_title(self) -> str:
        return ""

    def _dw_group(self) -> str:
        return ""

    def _dw_parts(self) -> list[View]:
        return []


class EventView(View):
    _dw_type = "Event"
    _dw_verb = "set"

    @property
    def _dw_created(self) -> Site | None:
        return created_site(getattr(getattr(self.obj, "_cond", None), "_lock", None))

    def _dw_free(self) -> int:
        return 1 if self.obj.is_set() else 0

    def _dw_detail(self) -> str:
        return "set" if self.obj.is_set() else "not set"


class BarrierView(EventView):
    _dw_type = "Barrier"
    _dw_verb = "reach"

    def _dw_free(self) -> int:
        return 1 if self.obj.broken else 0

    def _dw_detail(self) -> str:
        b = self.obj
        return f"{b.n_waiting} of {b.parties} parties waiting"


class SemaphoreView(EventView):
    _dw_type = "Semaphore"
    _dw_verb = "release"

    def _dw_free(self) -> int:
        return 1 if getattr(self.obj, "_value", 0) > 0 else 0

    def _dw_detail(self) -> str:
        return "untracked, made before enable()"


class QueueView(View):
    """A queue wait: ``get`` on an empty one, ``put`` on a full one, or ``join``."""

    _VERBS: ClassVar[dict[str, str]] = {
        "get": "put an item into",
        "put": "take an item from",
        "join": "finish the tasks of",
    }

    def __init__(self, obj: Any, op: str) -> None:
        super().__init__(obj)
        self.op = op
        # Waits for items and waits for room are different resources.
        self._dw_key = hash((id(obj), op))
        self._dw_type = type(obj).__name__
        self._dw_verb = self._VERBS[op]

    @property
    def _dw_created(self) -> Site | None:
        return created_site(getattr(self.obj, "mutex", None))

    def _size(self) -> int:
        try:
            return int(self.obj._qsize())
        except Exception:
            return 0

    def _dw_free(self) -> int:
        q = self.obj
        if self.op == "get":
            return 1 if self._size() > 0 else 0
        if self.op == "put":
            return 0 if 0 < q.maxsize <= self._size() else 1
        return 0 if q.unfinished_tasks else 1

    def _dw_detail(self) -> str:
        q = self.obj
        if self.op == "get":
            return "empty" if not self._size() else f"{self._size()} item(s)"
        if self.op == "put":
            return f"full, maxsize {q.maxsize}"
        return f"{q.unfinished_tasks} unfinished task(s)"


class ThreadView(View):
    """A ``join``: only the joined thread can end it."""

    _dw_kind = "join"
    _dw_type = "Thread"
    _dw_verb = "finish"

    @property
    def _dw_created(self) -> Site | None:
        return None

    def _dw_holders(self) -> list[Holder]:
        t = self.obj
        if t.ident is None or not t.is_alive():
            return []
        return [(t.ident, 1, None)]

    def _dw_free(self) -> int:
        return 0 if self.obj.is_alive() else 1

    def _dw_owner_bound(self) -> bool:
        return True

    def _dw_title(self) -> str:
        return f"Thread {self.obj.name!r}"


_PENDING = "PENDING"
_RUNNING = "RUNNING"


def _executor_label(ex: Any) -> str:
    prefix = getattr(ex, "_thread_name_prefix", "") or "?"
    return f"{type(ex).__name__} {prefix!r}"


class FutureView(View):
    """A ``concurrent.futures.Future``: the thread running it can complete it;
    a pending one of a full ThreadPoolExecutor only that executor's workers
    can start.  Any other (a future set by hand, a process pool's) is a
    signal any running thread might give."""

    _dw_kind = "future"
    _dw_type = "Future"
    _dw_verb = "complete"

    @property
    def _dw_created(self) -> Site | None:
        return created_site(getattr(getattr(self.obj, "_condition", None), "_lock", None))

    def _executor(self) -> Any:
        ref = getattr(self.obj, "_dw_executor", None)
        return ref() if ref is not None else None

    def _workers(self) -> list[Any] | None:
        """The executor's workers when it can start no new one, else None."""
        ex = self._executor()
        if ex is None or self.obj._state != _PENDING:
            return None
        threads = [t for t in list(getattr(ex, "_threads", ())) if t.is_alive()]
        if len(threads) < getattr(ex, "_max_workers", 0) or getattr(ex, "_shutdown", False):
            return None
        return threads

    def _runner(self) -> ThreadRecord | None:
        if self.obj._state != _RUNNING or self._executor() is None:
            return None
        runner: ThreadRecord | None = getattr(self.obj, "_dw_runner", None)
        return runner

    def _dw_holders(self) -> list[Holder]:
        runner = self._runner()
        if runner is not None:
            return [(runner, 1, None)]
        workers = self._workers()
        return [(t.ident, 1, None) for t in workers or ()]

    def _dw_free(self) -> int:
        return 0 if self.obj._state in (_PENDING, _RUNNING) else 1

    def _dw_owner_bound(self) -> bool:
        return self._runner() is not None or self._workers() is not None

    def _dw_detail(self) -> str:
        state = self.obj._state
        ex = self._executor()
        where = f" in {_executor_label(ex)}" if ex is not None else ""
        if state == _PENDING:
            return f"pending{where}"
        if state == _RUNNING:
            return f"running{where}"
        return str(state).lower()

    def _dw_group(self) -> str:
        ex = self._executor()
        return _executor_label(ex) if ex is not None else ""


class FutureSetView(View):
    """``concurrent.futures.wait`` / ``as_completed``: a wait for any (or all)
    of several futures."""

    _dw_type = "Futures"
    _dw_verb = "complete"

    def __init__(self, futures: list[Any], need_all: bool) -> None:
        super().__init__(futures)
        # One per wait: the key of this view, kept by the wait record.
        self._dw_key = id(self)
        self._dw_id = id(self)
        self._dw_kind = "all" if need_all else "any"
        self.views = [FutureView(f) for f in futures]

    @property
    def _dw_created(self) -> Site | None:
        return None

    def _dw_title(self) -> str:
        n = len(self.views)
        word = "all" if self._dw_kind == "all" else "any"
        return f"{word} of {n} future{'s' if n != 1 else ''}"

    def _dw_free(self) -> int:
        done = [v._dw_free() for v in self.views]
        if not done:
            return 1
        return 1 if (all(done) if self._dw_kind == "all" else any(done)) else 0

    def _dw_parts(self) -> list[View]:
        return list(self.views)


class ImportView(View):
    """A module lock of the import system: held by the thread importing it."""

    _dw_kind = "import"
    _dw_type = "import"
    _dw_verb = "finish importing"

    @property
    def _dw_created(self) -> Site | None:
        return None

    def _dw_holders(self) -> list[Holder]:
        owner = getattr(self.obj, "owner", None)
        return [(owner, 1, None)] if isinstance(owner, int) else []

    def _dw_owner_bound(self) -> bool:
        return True

    def _dw_title(self) -> str:
        return f"import of module {getattr(self.obj, 'name', '?')!r}"


def import_wait(ident: int) -> Any:
    """The module lock thread ``ident`` waits for, if it is blocked importing
    a module another thread is importing (read from importlib's own table)."""
    bootstrap = sys.modules.get("_frozen_importlib")
    table = getattr(bootstrap, "_blocking_on", None)
    if not table:
        return None
    try:
        entry = table.get(ident)
    except Exception:
        return None
    locks = list(entry) if isinstance(entry, list) else [entry] if entry is not None else []
    for lock in locks:
        owner = getattr(lock, "owner", None)
        if owner is not None and owner != ident:
            return lock
    return None


# -- what a Condition wait means ------------------------------------------------


def _meaning(cond: Any, frame: FrameType | None) -> View:
    """The resource a ``Condition.wait`` called from ``frame`` stands for."""
    view: View | None = None
    f = frame
    for _ in range(8):
        if f is None:
            break
        module = f.f_globals.get("__name__", "")
        name = f.f_code.co_name
        if module == __name__ or module.startswith("wrapt"):
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


# -- the wrappers -----------------------------------------------------------------

#: True while enabled: the wrappers track; False: they call the original.
active = False


def _timeout_arg(timeout: Any = None) -> Any:
    return timeout


def _usable(timeout: Any) -> bool:
    """A timeout the tracked wait handles exactly as the original would."""
    if timeout is None:
        return True
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        return False
    return 0 < timeout <= _native.TIMEOUT_MAX


def _noop() -> None:
    return None


def _green() -> bool:
    """Under green threads the original waits (which take threading's
    ``_allocate_lock``, patched to a green lock) and the detector stands down."""
    if not _state.green():
        return False
    hook = _state.on_green
    if hook is not None:
        hook()
    return True


def condition_wait(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """``Condition.wait``, as threading's own, with the blocking part tracked."""
    try:
        timeout = _timeout_arg(*args, **kwargs)
    except TypeError:
        return wrapped(*args, **kwargs)  # the original's own message
    if not active or not _usable(timeout) or instance is None or _green():
        return wrapped(*args, **kwargs)
    if not instance._is_owned():
        raise RuntimeError("cannot wait on un-acquired lock")
    caller = _native.caller_frame(1)
    waiter = _native.allocate_lock()
    waiter.acquire()
    instance._waiters.append(waiter)
    saved_state = instance._release_save()
    gotit = False
    try:  # restore state no matter what (e.g., KeyboardInterrupt)
        rec = current_record()
        wait = WaitRecord(rec, _meaning(instance, caller), timeout, frame_site(caller))
        wait.waiter = waiter
        gotit = wait_until(wait, lambda s: bool(waiter.acquire(True, s)), timeout, _noop)
        return gotit
    finally:
        instance._acquire_restore(saved_state)
        if not gotit:
            with contextlib.suppress(ValueError):
                instance._waiters.remove(waiter)


def thread_join(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """``Thread.join``: the original's checks, then a tracked, sliced wait."""
    try:
        timeout = _timeout_arg(*args, **kwargs)
    except TypeError:
        return wrapped(*args, **kwargs)
    if not active or not _usable(timeout) or instance is None or _green():
        return wrapped(*args, **kwargs)
    wrapped(0)  # raises what the original raises (not started, current thread)
    if not instance.is_alive():
        return None
    rec = current_record()
    wait = WaitRecord(rec, ThreadView(instance), timeout, frame_site(_native.caller_frame(1)))

    def attempt(seconds: float) -> bool:
        wrapped(seconds)
        return not instance.is_alive()

    wait_until(wait, attempt, timeout, _noop)
    return None


def future_running(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """``Future.set_running_or_notify_cancel``: remember which thread runs it."""
    result = wrapped(*args, **kwargs)
    if result and active and instance is not None:
        instance._dw_runner = current_record()
    return result


def executor_submit(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """``ThreadPoolExecutor.submit``: remember the executor of each future."""
    future = wrapped(*args, **kwargs)
    if active and instance is not None:
        with contextlib.suppress(AttributeError, TypeError):
            future._dw_executor = weakref.ref(instance)
    return future


# -- installing them ----------------------------------------------------------------

#: (module name, class name, attribute, wrapper)
_TARGETS: tuple[tuple[str, str, str, Callable[..., Any]], ...] = (
    ("threading", "Condition", "wait", condition_wait),
    ("threading", "Thread", "join", thread_join),
    ("concurrent.futures._base", "Future", "set_running_or_notify_cancel", future_running),
    ("concurrent.futures.thread", "ThreadPoolExecutor", "submit", executor_submit),
)

#: (class, attribute) -> (our wrapper, what was there before)
_installed: dict[tuple[type, str], tuple[Any, Any]] = {}
_MethodWrapper: Any = None
_hooked: set[str] = set()


def _install(module: Any) -> None:
    global _MethodWrapper
    if _MethodWrapper is None:
        FunctionWrapper: Any = wrapper_types()[0]
        BoundFunctionWrapper: Any = wrapper_types()[1]

        # Pickled as the originals are: ``Condition.wait`` by reference, and
        # a method bound to an object as getattr(object, name).
        class BoundMethodWrapper(BoundFunctionWrapper):  # type: ignore[misc]
            def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
                cls, attr = self._self_parent._self_dw_target
                instance = self._self_instance
                return (getattr, (cls if instance is None else instance, attr))

        class MethodWrapper(FunctionWrapper):  # type: ignore[misc]
            __bound_function_wrapper__ = BoundMethodWrapper

            def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
                return (getattr, self._self_dw_target)

        _MethodWrapper = MethodWrapper
    if not active:
        return
    for mod_name, cls_name, attr, wrapper in _TARGETS:
        if mod_name != getattr(module, "__name__", None):
            continue
        cls = getattr(module, cls_name, None)
        if not isinstance(cls, type) or (cls, attr) in _installed:
            continue
        original = cls.__dict__.get(attr)
        if original is None:
            continue
        wrapped = _MethodWrapper(original, wrapper)
        wrapped._self_dw_target = (cls, attr)
        setattr(cls, attr, wrapped)
        _installed[(cls, attr)] = (wrapped, original)


def patch() -> None:
    """Install the wrappers; for modules not imported yet, when they are."""
    global active
    active = True
    for mod_name in dict.fromkeys(t[0] for t in _TARGETS):
        module = sys.modules.get(mod_name)
        if module is not None:
            _install(module)
        elif mod_name not in _hooked:
            # Registered once: the hook checks `active` itself.
            _hooked.add(mod_name)
            when_imported(mod_name, _install)


def unpatch() -> None:
    """Put the originals back (where our wrapper is still in place)."""
    global active
    active = False
    for (cls, attr), (wrapped, original) in list(_installed.items()):
        if cls.__dict__.get(attr) is wrapped:
            setattr(cls, attr, original)
        del _installed[(cls, attr)]
