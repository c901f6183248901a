"""What the watcher sees of a wait that is not on a tracked lock: a *view*
of the waited-for object (a Condition, Event, Barrier, queue, thread, future,
a set of futures, an import), with the same ``_dw_*`` protocol as the
tracked locks (`state.Tracked`), saying who holds it and who can release or
signal it.  Views are made in the waiting thread (by `meaning`) and read only
by the watcher.
"""

from __future__ import annotations

import sys
from typing import Any, ClassVar

from deadlockwatch._model import SIGNAL_KIND, Site
from deadlockwatch._track import loopread as _loopread
from deadlockwatch._track.state import Holder, ThreadRecord, internal_file

internal_file(__file__)


def _thread_name(ident: int) -> str:
    threading = sys.modules.get("threading")
    thread = getattr(threading, "_active", {}).get(ident)
    return str(thread.name) if thread is not None else f"thread-{ident}"


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

    def _loop_thread(self) -> int | None:
        """For ``asyncio.run_coroutine_threadsafe``'s future, not done: the
        thread running its loop (only that thread can complete it)."""
        loop = getattr(self.obj, "_dw_loop", None)
        if loop is None or self.obj._state not in (_PENDING, _RUNNING):
            return None
        try:
            return _loopread.loop_thread(loop)
        except Exception:
            return None

    def _dw_holders(self) -> list[Holder]:
        ident = self._loop_thread()
        if ident is not None:
            return [(ident, 1, None)]
        runner = self._runner()
        if runner is not None:
            return [(runner, 1, None)]
        workers = self._workers()
        return [(t.ident, 1, None) for t in workers or ()]

    def _dw_free(self) -> int:
        return 0 if self.obj._state in (_PENDING, _RUNNING) else 1

    def _dw_owner_bound(self) -> bool:
        return (
            self._loop_thread() is not None
            or self._runner() is not None
            or self._workers() is not None
        )

    def _dw_detail(self) -> str:
        state = self.obj._state
        ident = self._loop_thread()
        if ident is not None:
            name = _thread_name(ident)
            return f"{str(state).lower()} on the event loop of thread {name!r}"
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
