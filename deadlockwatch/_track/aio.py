"""asyncio tracking, as it runs in the event loop's thread (issue 15).

deadlockwatch never imports asyncio: `patch` asks the import hook to run
`_install` after each import of an ``asyncio`` module (and runs it at once if
the program has imported asyncio already), which patches each class once its
module has finished executing; `unpatch` puts every original back.
Patched in place on their classes (so objects made before `enable()` are
covered too):

- ``asyncio.Lock``: ``acquire`` notes the task that took it (its owner) and
  where; ``release`` forgets it (a Lock released by a task that does not own
  it, or outside any task, is no longer owner-bound).  Each task's held Locks
  (`held`: its last, only while it holds one; each Lock's ``_dw_prev``, the
  one its task took before it): a task that takes a Lock holding others
  orders its last one before it, in the threads' lock-order graph
  (`order.ORDER`, nodes of type ``asyncio.Lock``; no order is learned between
  an asyncio Lock and a thread's lock), so an inversion between tasks, or in
  one task at two times, is reported before it hangs (`_order`).
  ``async with lock:`` does the same in ``__aenter__`` and ``__aexit__``,
  set on the Lock class (which inherits them otherwise) and deleted again by
  `unpatch`: one coroutine and no call of the wrappers (`_lock_aenter`).
- Nothing is recorded when a task suspends in ``Lock.acquire``,
  ``Event.wait``, ``Condition.wait``, ``Semaphore.acquire``, a queue's
  ``get``/``put``/``join``, ``Barrier.wait``, a TaskGroup's exit or
  ``asyncio.wait``: the watcher reads what a suspended task awaits off its
  await chain, by the code of the frame it is suspended in (`wait_of`, the
  codes of `_WAITS`), when it scans the loops' tasks, and keeps a record of
  it (`AioWait` in `waiting`, keyed by the task, with a weak reference to
  the future the task is suspended on) while the task stays on that future.
- ``__init__`` of each of them: where it was made (a code object and an
  offset, no frame).
- ``BaseEventLoop.run_forever``: the running loops and their threads
  (`loops`), so that the watcher can read their tasks; and uvloop's
  ``Loop.run_forever`` (``run_until_complete`` and ``uvloop.run`` call it),
  set on its Python class, whose base in C has no Python attributes to read
  (`_install_uvloop`).
- ``run_coroutine_threadsafe`` (in ``asyncio.tasks`` and as ``asyncio``
  re-exports it): the future it returns notes its loop, whose thread alone
  can complete it (`views.FutureView`).

Awaiting another task (``await task``, ``gather``) is not recorded here: the
watcher reads it from the task's own ``_fut_waiter`` (`deadlockwatch._watch.tasks`).
Nothing here blocks, takes a lock, or calls into the watcher but
``resume_watcher`` (which starts it when none runs).
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import types
import weakref
from collections.abc import Callable
from typing import Any

from deadlockwatch._model import Finding, Site
from deadlockwatch._track import loopread as _loopread
from deadlockwatch._track import native as _native
from deadlockwatch._track import state as _state
from deadlockwatch._track.hook import after_each_import, forget, when_imported
from deadlockwatch._track.order import ORDER

_state.internal_file(__file__)

#: True while enabled (the wrappers track; otherwise they call the original).
active = False
#: Task -> what it awaits, as the watcher last saw it suspended in a tracked
#: wait (`wait_of`; kept while the task stays on the same future, and
#: dropped at the watcher's next scan of the loops' tasks once it has moved on).
waiting: dict[Any, AioWait] = {}
#: Task -> the last asyncio Lock it took and holds (only while it holds one);
#: the ones before it are chained by ``_dw_prev`` (`held_by`).
held: dict[Any, Any] = {}
#: A future some task awaits -> the task that will complete it, where known
#: (the pytest plugin's guard notes anyio's runner: the task that called the
#: test awaits a future the test's task sets when the test ends).
completed_by: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
#: Reports an inversion learned here (set by the watcher when it learns lock
#: orders; None: no order is learned).
report: Callable[[Finding], object] | None = None
#: Task -> its serial in lock orders (tasks' ids are reused).
_serials: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
#: Running event loop -> ident of the thread running it (`_loopread.loops`).
loops = _loopread.loops
#: Ident of a thread -> the loop its patched ``run_forever`` runs (while it
#: runs): the C ``aio_current_task`` finds the current task's loop here, by
#: thread, where asyncio's ``_get_running_loop`` makes a ``getpid`` system
#: call on 3.10/3.11 (a fork's child starts with none: `_forget_threads`).
by_thread: dict[int, Any] = {}
#: The loops of `loops` found running at `patch` (no ``run_forever`` of ours
#: to drop them): dropped by the watcher once they stop.
adopted: dict[Any, None] = {}
#: (class, attribute) -> the original (while patched).
_originals: dict[tuple[Any, str], Any] = {}
#: The code of ``asyncio.locks._ContextManagerMixin.__aenter__``.
_AENTER: Any = None
#: ``asyncio.current_task``, once asyncio is imported.
_current_task: Callable[[], Any] | None = None
#: The Lock wrappers' current task: on 3.10/3.11 (where ``current_task`` is
#: Python) ``_TABLE.get(_RUNNING())``, asyncio's own table of current tasks
#: and ``_get_running_loop``; else ``_CURRENT()``, 3.12+'s C ``current_task``
#: (3.14 keeps the current task per thread, in C: no table).
_TABLE: dict[Any, Any] | None = None
_RUNNING: Callable[[], Any] = type(None)
_CURRENT: Callable[[], Any] = type(None)
_getframe = sys._getframe
_INTERNAL_FILES = _state.INTERNAL_FILES


class AioWait:
    """A task suspended in a tracked wait: on what, since when, where.

    ``op`` tells a queue's two waits apart ("get": for an item, "put": for
    room).  The watcher marks ``reported`` once a finding through it is out,
    as for a thread's `WaitRecord`.
    """

    __slots__ = ("fut", "op", "reported", "resource", "since", "site", "task", "timeout")

    def __init__(self, task: Any, resource: Any, site: _state.RawSite | None, op: str = "") -> None:
        self.task = task
        #: A weak reference to the future the task is suspended on in this
        #: wait (`wait_of`'s, made by the watcher); None for the others.
        self.fut: Callable[[], Any] | None = None
        self.resource = resource
        self.since = _native.monotonic()
        self.site = site
        self.op = op
        self.reported = False
        #: Set by the watcher for the waits it makes up (a task awaiting a
        #: task under a timeout); None for these.
        self.timeout: float | None = None


_getattribute = object.__getattribute__


def mark(obj: Any, name: str, default: Any = None) -> Any:
    """One of deadlockwatch's attributes of an asyncio object (``_dw_owner``...),
    or ``default``: read as ``object`` does (no ``__getattr__`` of a subclass
    runs), and never through ``obj.__dict__``, which on 3.11+ turns the
    object's inline attribute values into a dict of its own, after which
    asyncio's attribute accesses on it miss their specialised fast paths
    (one Queue's ``__dict__`` read once: the asyncio ping-pong of
    benchmarks/ 11% more instructions per turn on 3.11)."""
    try:
        return _getattribute(obj, name)
    except AttributeError:
        return default


def _task() -> Any:
    current = _current_task
    if current is None or not active:
        return None
    try:
        return current()
    except RuntimeError:  # no running loop: the original says so itself
        return None


def _fast_current_task(tasks: Any) -> Callable[[], Any]:
    """``asyncio.current_task``; on 3.10/3.11, where it is Python, a lookup in
    the same table without its frame (3.12+ has it in C)."""
    current: Callable[[], Any] = tasks.current_task
    table = getattr(tasks, "_current_tasks", None)
    running = getattr(getattr(tasks, "events", None), "_get_running_loop", None)
    if not isinstance(current, types.FunctionType) or not isinstance(table, dict) or not running:
        return current

    def current_task() -> Any:
        loop = running()
        return None if loop is None else table.get(loop)

    return current_task


def _current_for_wrappers(tasks: Any) -> None:
    global _TABLE, _RUNNING, _CURRENT
    current = tasks.current_task
    table = getattr(tasks, "_current_tasks", None)
    running = getattr(getattr(tasks, "events", None), "_get_running_loop", None)
    if isinstance(current, types.FunctionType) and isinstance(table, dict) and running:
        _TABLE, _RUNNING = table, running
    else:
        _TABLE, _CURRENT = None, current
    configure = _c_helper("aio_configure")
    if configure is not None:
        configure(_TABLE, _RUNNING, _CURRENT, by_thread)


def break_deadlock(asyncio: Any, loop: Any, finding: Any, error: BaseException) -> None:
    """In the loop's thread (by the pytest plugin's guard of an async test, or
    the demo; never by the watcher): give each task of ``finding``'s cycle that runs
    on ``loop`` and is still suspended in the tracked wait the finding saw
    (a Lock's, an Event's, a queue's waiter) ``error`` (a `DeadlockError`)
    there, so it unwinds; one the watcher's `interrupt` reached first, or
    that has moved on since, is left alone.  A task awaiting a task (or an
    executor's job) is left alone: it wakes when that one ends.  A cycle
    of such tasks only cannot be broken (CPython's ``Task.cancel``
    recurses around a cycle of tasks without end): the loop is stopped,
    which fails the test."""
    cycle = {step.thread for step in finding.cycle}
    kinds = {r.key: r.kind for r in finding.resources}
    # (token, resource key) of each task's wait: a token is the id() of a
    # record that may be gone, its address reused by the task's next one.
    tokens = {
        t.key: (t.wait.token, t.wait.resource)
        for t in finding.threads
        if t.wait is not None and kinds.get(t.wait.resource) in ("lock", "signal")
    }
    mine = [t for t in list(asyncio.all_tasks(loop)) if id(t) in cycle and not t.done()]
    hit = False
    for task in mine:
        token = tokens.get(id(task))
        if token is None:
            continue
        hit = True
        w = waiting.get(task)
        fut = getattr(task, "_fut_waiter", None)
        if w is None or (id(w), id(w.resource) + (w.op == "put")) != token:
            continue  # no longer in that wait
        if w.op not in INTERRUPTIBLE:
            continue  # a future of the program's own: its error would be theirs too
        if fut is None or fut.done() or not still_in(w, fut):
            continue
        fut.set_exception(error)
    if mine and not hit:
        loop.stop()


#: The ops of the waits recorded by the wrappers (a Lock, Event, Condition,
#: Semaphore, a queue's item or room, ``Queue.join``, a Barrier): those a
#: `DeadlockError` can end.  Not the awaits of tasks (made up by the watcher:
#: "await", "executor"; recorded: a TaskGroup's, ``asyncio.wait``'s).
INTERRUPTIBLE = ("", "get", "put", "join", "barrier")
#: Waits recorded whole: a tracked wait inside one is not recorded again.
OUTER = ("join", "barrier")


def interrupt(victims: list[tuple[AioWait, BaseException]]) -> None:
    """The ``raise`` actions for tasks, called by the watcher once a deadlock is
    confirmed: hand each loop one callback (``call_soon_threadsafe``) that
    gives each victim still in that wait its error at its await
    (`_interrupt`).  The only code deadlockwatch runs on an application's
    loop outside the pytest guard, and only when asked to break a deadlock:
    a thread's error is raised by deadlockwatch's wait wrapper in that
    thread; a task's wait wrapper cannot wake by itself without a timer on
    the loop at every wait, which would change what the loop schedules while
    no deadlock exists."""
    by_loop: dict[Any, list[tuple[AioWait, BaseException]]] = {}
    for w, error in victims:
        if w.op not in INTERRUPTIBLE:
            continue
        try:
            by_loop.setdefault(w.task.get_loop(), []).append((w, error))
        except Exception:
            continue
    for loop, items in by_loop.items():
        try:
            loop.call_soon_threadsafe(_interrupt, items)
        except Exception:  # closed meanwhile: its tasks never run again
            continue


def _interrupt(items: list[tuple[AioWait, BaseException]]) -> None:
    """In the loop's thread: each task still suspended in the same tracked wait
    gets ``error`` from the future it awaits (the Lock's, Event's, queue's
    waiter), so ``async with lock:`` unwinds as a thread's ``with`` does."""
    for w, error in items:
        task = w.task
        if waiting.get(task) is not w:
            continue  # woken meanwhile (another victim unwound first)
        fut = getattr(task, "_fut_waiter", None)
        if fut is not None and not fut.done() and still_in(w, fut):
            fut.set_exception(error)


_interrupt._dw_own = True  # type: ignore[attr-defined]


def _under_timeout(task: Any) -> bool:
    """Whether a pending ``asyncio.timeout()`` (``wait_for`` on 3.12+) will
    cancel ``task``: read off its loop's timers (asyncio's or uvloop's,
    `_loopread`), in the loop's own thread (only for a new order).
    ``wait_for`` on 3.10/3.11 awaits in a task of its own, which holds no
    Lock, so teaches no order either."""
    try:
        pending = _loopread.pending(task.get_loop())
    except Exception:
        return False
    for h in pending or ():
        owner = getattr(h.callback, "__self__", None)
        if getattr(owner, "_task", None) is task and type(owner).__name__ == "Timeout":
            return True
    return False


def held_by(task: Any, last: Any) -> list[Any]:
    """The Locks ``task`` holds, oldest first, from ``last`` (its entry in
    `held`) down the ``_dw_prev`` chain (a Lock released out of order, no
    longer ``task``'s, is skipped)."""
    out: list[Any] = []
    lock = last
    while lock is not None and len(out) < 1000:
        if mark(lock, "_dw_owner") is task and lock not in out:
            out.append(lock)
        lock = mark(lock, "_dw_prev")
    out.reverse()
    return out


def _order(task: Any, last: Any, lock: Any) -> None:
    """``task``, whose last held Lock is ``last``, takes ``lock``: learn
    last -> lock (a new order only; the caller has looked it up in
    ``_dw_after``)."""
    emit = report
    if emit is None or _under_timeout(task):
        return  # a timed wait teaches no order (it ends), as a thread's timed acquire
    mine = held_by(task, last)
    for one in (last, lock):
        if mark(one, "_dw_type") is None:
            one._dw_after = set()
            one._dw_type = "asyncio.Lock"
            one._created = _state.site_at(mark(one, "_dw_created"))
    serial = _serials.get(task)
    if serial is None:
        serial = _serials[task] = _state.next_serial()
    try:
        name = task.get_name()
    except AttributeError:
        name = repr(task)
    stack = _state.stack_of(_native.getframe())
    root = getattr(getattr(task, "get_coro", lambda: None)(), "cr_frame", None)
    if root is not None:  # from the task's coroutine on, not the loop's frames
        code = root.f_code
        for i, fr in enumerate(stack):
            if fr.file == code.co_filename and fr.function == code.co_name:
                stack = stack[i:]
                break
    site = Site(stack[-1].file, stack[-1].line, stack[-1].function) if stack else None
    finding = ORDER.learn(
        last, lock, mine, f"task {name}", id(task), serial, where=(site, stack), task=True
    )
    if finding is not None:
        emit(finding)


# -- the wrappers ------------------------------------------------------------------


def _py_current_task() -> Any:
    """The current task without the C core (`_c_helper`): a lookup in
    3.10/3.11's table, else 3.12+'s ``current_task``; None with no running
    loop (the original says so itself)."""
    table = _TABLE
    if table is not None:
        return table.get(_RUNNING())
    try:
        return _CURRENT()
    except RuntimeError:
        return None


def _lock_acquire(original: Any) -> Any:
    current = _c_helper("aio_current_task")

    @functools.wraps(original)
    async def acquire(self: Any) -> Any:
        # The current task, inline (in C, by thread: no getpid on 3.10/3.11;
        # else a lookup in 3.10/3.11's table, 3.12+'s C current_task): this
        # and the rest are on every acquire.
        if not active:
            return await original(self)
        task = current() if current is not None else _py_current_task()
        if task is None:
            return await original(self)
        last = held.get(task)
        if last is not None and last is not self and id(self) not in mark(last, "_dw_after", ()):
            _order(task, last, self)  # a new order (or orders off: returns at once)
        if not self._locked and not self._waiters:
            # Free, nobody waiting: the original's own fast path, without a
            # second coroutine.
            self._locked = True
            got = True
        else:
            # Suspends: what it waits for is read by the watcher (`wait_of`),
            # which must run (a loop started before enable() started none).
            resume = _state.resume_watcher
            if resume is not None:
                resume()
            got = await original(self)
        # Where it was taken: the caller (of ``__aenter__`` for ``async
        # with``), read off two frames, not walked to.
        try:
            frame = _getframe(1)
        except ValueError:  # the task's own coroutine: no caller
            frame = None
        if frame is not None and frame.f_code is _AENTER:
            frame = frame.f_back
        # Plain attribute stores, never through the Lock's ``__dict__``: reading
        # that makes the object's attributes a dict of their own, and every
        # attribute access of asyncio's code on it (and on the other Locks met
        # at the same place) slower from then on (`mark`).
        if frame is not None and frame.f_code.co_filename not in _INTERNAL_FILES:
            self._dw_taken = frame.f_code, frame.f_lasti
        else:
            self._dw_taken = _state.raw_site_of(frame)
        self._dw_owner = task
        self._dw_prev = last
        held[task] = self
        return got

    return acquire


def _lock_release(original: Any) -> Any:
    current = _c_helper("aio_current_task")

    @functools.wraps(original)
    def release(self: Any) -> Any:
        try:
            owner = self._dw_owner
        except AttributeError:  # never taken while tracked
            owner = None
        result = original(self)
        if owner is not None:
            self._dw_owner = None
            last = held.get(owner) is self  # (a bool: mypy would narrow self)
            if last:
                prev = self._dw_prev
                if prev is None:
                    del held[owner]
                else:
                    self._dw_prev = None
                    _released_under(owner, prev)
            if active:
                _note_releaser(self, owner, current)
        return result

    return release


def _note_releaser(lock: Any, owner: Any, current: Callable[[], Any] | None = None) -> None:
    """A Lock released by a task other than its owner is not owner-bound.
    ``current``: `_speedups.aio_current_task`, where the C core is in use."""
    task = current() if current is not None else _py_current_task()
    if owner is not task:
        lock._dw_shared = True


def _lock_aenter(original: Any) -> Any:
    """``Lock.__aenter__`` (the mixin's, inherited, otherwise): ``async with
    lock:`` takes the Lock here, as the acquire wrapper does, without
    calling it: one coroutine where the mixin's ``__aenter__`` makes two
    (its own and ``acquire``'s), and the caller's frame, where the Lock is
    taken, is this one's, read off one frame.  A subclass whose ``acquire``
    is its own has it called, as the mixin does."""
    lock_cls, acquire_wrapper, acquire_original = _lock_parts()
    caller_site = _c_helper("aio_caller_site")
    current = _c_helper("aio_current_task")

    @functools.wraps(original)
    async def __aenter__(self: Any) -> None:
        cls = type(self)
        if not active or (cls is not lock_cls and cls.acquire is not acquire_wrapper):
            await self.acquire()
            return None
        task = current() if current is not None else _py_current_task()
        if task is None:
            await acquire_original(self)
            return None
        last = held.get(task)
        if last is not None and last is not self and id(self) not in mark(last, "_dw_after", ()):
            _order(task, last, self)  # a new order (or orders off: returns at once)
        if not self._locked and not self._waiters:
            self._locked = True  # free, nobody waiting: the original's fast path
        else:
            resume = _state.resume_watcher  # suspends: the watcher must run
            if resume is not None:
                resume()
            await acquire_original(self)
        # Taken where ``async with`` is: this one's caller (`_lock_acquire`),
        # read in C where it is built (`_c_helper`).
        site = None if caller_site is None else caller_site()
        if site is not None:
            self._dw_taken = site
        else:
            try:
                frame = _getframe(1)
            except ValueError:  # awaited as a task's own coroutine: no caller
                self._dw_taken = None
            else:
                code = frame.f_code
                if code.co_filename in _INTERNAL_FILES:
                    self._dw_taken = _state.raw_site_of(frame)
                else:
                    self._dw_taken = code, frame.f_lasti
        self._dw_owner = task
        self._dw_prev = last
        held[task] = self
        return None

    return __aenter__


def _lock_aexit(original: Any) -> Any:
    """``Lock.__aexit__`` (the mixin's, inherited, otherwise): releases the
    Lock as the release wrapper does, without calling it (a subclass whose
    ``release`` is its own has it called, as the mixin does)."""
    lock_cls, release_wrapper, release_original = _lock_parts("release")
    inline = _same_code(release_original, _release_as_in_asyncio)
    current = _c_helper("aio_current_task")

    @functools.wraps(original)
    async def __aexit__(self: Any, exc_type: Any, exc: Any, tb: Any) -> None:
        cls = type(self)
        if cls is not lock_cls and cls.release is not release_wrapper:
            self.release()
            return None
        try:
            owner = self._dw_owner
        except AttributeError:  # never taken while tracked
            owner = None
        if not inline:
            release_original(self)
        elif self._locked:  # the original's body, inline (`_release_as_in_asyncio`)
            self._locked = False
            self._wake_up_first()
        else:
            raise RuntimeError("Lock is not acquired.")
        if owner is None:
            return None
        # As the release wrapper does (`_lock_release`).
        self._dw_owner = None
        last = held.pop(owner, None)
        if last is self:
            prev = self._dw_prev
            if prev is not None:
                self._dw_prev = None
                _released_under(owner, prev)
        elif last is not None:
            held[owner] = last  # released out of order: its last stays
        if active:
            # `_note_releaser`, written out: ``async with`` is the hot path
            # (a call costs about 400 instructions, 0.6% of a ping-pong round).
            if current is not None:  # in C (`_c_helper`)
                task = current()
            else:
                table = _TABLE
                if table is not None:
                    task = table.get(_RUNNING())
                else:
                    try:
                        task = _CURRENT()
                    except RuntimeError:
                        task = None
            if owner is not task:
                self._dw_shared = True
        return None

    return __aexit__


def _forget_threads() -> None:
    """In a fork's child: its loops' runs are the parent's (asyncio's own
    ``_get_running_loop`` answers None there)."""
    by_thread.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_threads)


def _c_helper(name: str) -> Callable[..., Any] | None:
    """``_speedups``'s ``name`` where the C core is in use, else None.  The
    ``async with`` wrappers read the current task (``aio_current_task``) and
    their caller's site (``aio_caller_site``, no frame object, no
    ``sys._getframe`` audit event) with them: fewer bytecodes and C
    functions on the hot path, whose CPU time ran further above its
    instructions than elsewhere (the asyncio ping-pong, 3.11: 1.07 times
    the instructions, 1.12 times the loop thread's CPU time, with more
    instruction-cache misses and mispredicted branches in callgrind's
    simulation)."""
    from deadlockwatch._track import primitives

    if not primitives.ACCELERATED:
        return None
    from deadlockwatch._track import _speedups

    helper: Callable[..., Any] | None = getattr(_speedups, name, None)
    return helper


def _release_as_in_asyncio(self: Any) -> None:
    """``asyncio.Lock.release`` as in CPython 3.10 to 3.13 (`_same_code`)."""
    if self._locked:
        self._locked = False
        self._wake_up_first()
    else:
        raise RuntimeError("Lock is not acquired.")


def _same_code(func: Any, reference: Any) -> bool:
    """Whether ``func`` compiles to the same bytecode, names and constants
    (its docstring aside) as ``reference``: its body can be inlined."""
    a, b = getattr(func, "__code__", None), reference.__code__
    if a is None:
        return False
    try:
        return bool(
            a.co_code == b.co_code
            and a.co_names == b.co_names
            and a.co_consts[1:] == b.co_consts[1:]
            and a.co_varnames == b.co_varnames
        )
    except Exception:
        return False


def _lock_parts(name: str = "acquire") -> tuple[Any, Any, Any]:
    """(asyncio.Lock, its wrapper of ``name``, the original): patched before
    ``__aenter__`` and ``__aexit__`` (`_TARGETS`)."""
    cls = sys.modules["asyncio.locks"].Lock
    return cls, cls.__dict__[name], _originals[(cls, name)]


def _released_under(owner: Any, prev: Any) -> None:
    """``owner`` released its last Lock, taken holding ``prev``: its last is
    now the first still held down the chain (some may have been released
    out of order)."""
    while prev is not None and mark(prev, "_dw_owner") is not owner:
        prev = mark(prev, "_dw_prev")
    if prev is None:
        held.pop(owner, None)
    else:
        held[owner] = prev


def _created(original: Any) -> Any:
    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        if active:
            self._dw_created = _state.raw_site_of(_native.caller_frame(0))

    return __init__


def _run_forever(original: Any) -> Any:
    @functools.wraps(original)
    def run_forever(self: Any) -> Any:
        if not active:
            return original(self)
        ident = _native.get_ident()
        loops[self] = ident
        before = by_thread.get(ident)  # (a loop already running: original raises)
        by_thread[ident] = self
        resume = _state.resume_watcher
        if resume is not None:
            resume()
        try:
            return original(self)
        finally:
            loops.pop(self, None)
            if before is None:
                by_thread.pop(ident, None)
            else:
                by_thread[ident] = before

    return run_forever


def _run_coroutine_threadsafe(original: Any) -> Any:
    """The ``concurrent.futures.Future`` it returns notes its loop: a thread
    waiting on its result waits for that loop's thread."""

    @functools.wraps(original)
    def run_coroutine_threadsafe(coro: Any, loop: Any) -> Any:
        future = original(coro, loop)
        if active:
            future._dw_loop = loop
        return future

    return run_coroutine_threadsafe


def _wrap_future(original: Any) -> Any:
    """``asyncio.wrap_future`` (``run_in_executor``, ``to_thread``): the
    asyncio future it makes notes the ``concurrent.futures.Future`` it is
    chained from, which the watcher's scan of tasks reads."""

    @functools.wraps(original)
    def wrap_future(future: Any, *args: Any, **kwargs: Any) -> Any:
        new = original(future, *args, **kwargs)
        if active and new is not future:
            with contextlib.suppress(AttributeError, TypeError):
                new._dw_source = future
        return new

    return wrap_future


#: (module, class, attribute, maker): what is patched, class by class.
_TARGETS: tuple[tuple[str, str, str, Callable[[Any], Any]], ...] = (
    ("asyncio.locks", "Lock", "acquire", _lock_acquire),
    ("asyncio.locks", "Lock", "release", _lock_release),
    ("asyncio.locks", "Lock", "__aenter__", _lock_aenter),
    ("asyncio.locks", "Lock", "__aexit__", _lock_aexit),
    ("asyncio.base_events", "BaseEventLoop", "run_forever", _run_forever),
    *(
        (module, cls, "__init__", _created)
        for module, cls in (
            ("asyncio.locks", "Lock"),
            ("asyncio.locks", "Event"),
            ("asyncio.locks", "Condition"),
            ("asyncio.locks", "Semaphore"),
            ("asyncio.queues", "Queue"),
            ("asyncio.locks", "Barrier"),
        )
    ),
)
_RCT = "run_coroutine_threadsafe"
#: (module, function, maker): the module functions patched.
_FUNCTIONS: tuple[tuple[str, str, Callable[[Any], Any]], ...] = (
    ("asyncio.tasks", _RCT, _run_coroutine_threadsafe),
    ("asyncio.futures", "wrap_future", _wrap_future),
)
#: Attributes of `_TARGETS` a class inherits (``Lock.__aenter__``): patched
#: on the class itself, and deleted from it again by `unpatch`.
_INHERITED = ("__aenter__", "__aexit__")
#: The (class, attribute) of `_originals` that were inherited.
_added: set[tuple[Any, str]] = set()
#: (module, class or None, function, op): the waits read by the watcher off a
#: suspended task's await chain (`wait_of`), by the code of the frame it is
#: suspended in; none of these is patched.  The Lock's is its original
#: ``acquire``'s (under the wrapper).  ``op`` as in `AioWait`: "" a Lock,
#: Event, Condition or Semaphore; a queue's item, room or ``join``; a
#: Barrier; a TaskGroup's exit (``_aexit`` where it has one) and
#: ``asyncio.wait``'s own ``_wait`` (any or all of ``fs``).
_WAITS: tuple[tuple[str, str | None, str, str], ...] = (
    ("asyncio.locks", "Lock", "acquire", ""),
    ("asyncio.locks", "Event", "wait", ""),
    ("asyncio.locks", "Condition", "wait", ""),
    ("asyncio.locks", "Semaphore", "acquire", ""),
    ("asyncio.queues", "Queue", "get", "get"),
    ("asyncio.queues", "Queue", "put", "put"),
    ("asyncio.queues", "Queue", "join", "join"),
    ("asyncio.locks", "Barrier", "wait", "barrier"),
    ("asyncio.taskgroups", "TaskGroup", "__aexit__", "group"),
    ("asyncio.taskgroups", "TaskGroup", "_aexit", "group"),
    ("asyncio.tasks", None, "_wait", "wait"),
)
#: The code of each of `_WAITS` in this Python -> its op.
CODES: dict[Any, str] = {}
#: Those the ``asyncio`` package re-exports.
_PUBLIC = (_RCT, "wrap_future")
_INTERNAL = ("locks", "queues", "tasks", "futures", "timeouts", "base_events", "threads")


def _ready(name: str) -> Any:
    """Module ``name`` if it has been imported and has finished executing."""
    module = sys.modules.get(name)
    spec = getattr(module, "__spec__", None)
    if module is None or getattr(spec, "_initializing", False):
        return None
    return module


def _wait_code(mod_name: str, cls_name: str | None, attr: str) -> tuple[bool, Any]:
    """(whether the module is ready, the code of the original function)."""
    module = _ready(mod_name)
    if module is None:
        return False, None
    owner = module if cls_name is None else getattr(module, cls_name, None)
    where = getattr(owner, "__dict__", {})
    func = _originals.get((owner, attr)) or where.get(attr)
    func = getattr(func, "_dw_original", func)
    return True, getattr(func, "__code__", None)


def _note_waits() -> None:
    for mod_name, cls_name, attr, op in _WAITS:
        code = _wait_code(mod_name, cls_name, attr)[1]
        if code is not None:
            CODES[code] = op


def still_in(w: AioWait, fut: Any) -> bool:
    """Whether ``fut`` (the task's ``_fut_waiter`` now) is the future of the
    wait ``w`` was made for (a wait not read off frames: always)."""
    ref = w.fut
    return ref is None or ref() is fut


def wait_of(task: Any, frames: list[Any]) -> tuple[Any, str] | None:
    """What ``task``, suspended, awaits, read off its await chain ``frames``
    (outermost first; in the watcher's thread, the task not running): the
    object and op of the outermost ``Queue.join`` or ``Barrier.wait`` in it
    (recorded whole: the Event, Condition and Lock inside say nothing more),
    else of its innermost frame if that is one of `_WAITS`; None for any
    other wait (a socket's, a sleep's...)."""
    found = None
    for frame in frames:
        op = CODES.get(frame.f_code)
        if op in OUTER:
            found = frame, op
            break
    if found is None and frames:
        op = CODES.get(frames[-1].f_code)
        if op is not None:
            found = frames[-1], op
    if found is None:
        return None
    frame, op = found
    try:
        local = frame.f_locals
        if op == "wait":
            fs = local.get("fs")
            return fs, "wait-all" if local.get("return_when") == "ALL_COMPLETED" else "wait-any"
        obj = local.get("self")
    except Exception:
        return None
    return (obj, op) if obj is not None else None


def _install(_module: object = None) -> None:
    """Patch each target whose module has been imported in full (asyncio
    imports ``threading`` half-way through its own import, and start-up
    enables the detector right then): the others after a later import of
    an ``asyncio`` module, when `_pending` runs again."""
    global _current_task, _AENTER
    if not active:
        return
    locks = _ready("asyncio.locks")
    mixin = getattr(locks, "_ContextManagerMixin", None)
    if mixin is not None and _AENTER is None:
        _AENTER = getattr(mixin.__dict__.get("__aenter__"), "__code__", None)
    tasks = _ready("asyncio.tasks")
    if tasks is not None and _current_task is None:
        _current_task = _fast_current_task(tasks)
        _current_for_wrappers(tasks)
    for name in _INTERNAL:
        module = _ready(f"asyncio.{name}")
        path = getattr(module, "__file__", None)
        if path:
            _state.internal_file(path)
    _note_waits()
    for mod_name, cls_name, attr, make in _TARGETS:
        module = _ready(mod_name)
        cls = getattr(module, cls_name, None)
        if not isinstance(cls, type) or (cls, attr) in _originals:
            continue
        original = cls.__dict__.get(attr)
        if original is None and attr in _INHERITED:
            original = getattr(cls, attr, None)
            if original is not None:
                _added.add((cls, attr))
        if original is None:
            continue
        replacement = make(original)
        replacement._dw_original = original
        _originals[(cls, attr)] = original
        setattr(cls, attr, replacement)
    # Module functions, in their module and, for the public ones, as the
    # package re-exports them.
    package = _ready("asyncio")
    for mod_name, name, make in _FUNCTIONS:
        module = _ready(mod_name)
        original = _originals.get((module, name)) or getattr(module, name, None)
        if module is None or original is None:
            continue
        for where in (module, package):
            if where is None or (where, name) in _originals or (where, name) == (package, "_wait"):
                continue
            bound = where.__dict__.get(name)
            if bound is not original:
                if getattr(bound, "_dw_original", None) is original:
                    # The package re-exported the module's once patched: put
                    # back by `unpatch` too.
                    _originals[(where, name)] = original
                continue  # else someone else's, or bound before
            replacement = make(original)
            replacement._dw_original = original
            _originals[(where, name)] = original
            setattr(where, name, replacement)
    if _all_patched():
        forget(_install)


def _all_patched() -> bool:
    """Every target patched that this Python has (Barrier and TaskGroup are
    3.11+), once asyncio's package has finished importing."""
    if _current_task is None or _ready("asyncio") is None:
        return False
    for mod_name, cls_name, attr, _ in _TARGETS:
        module = _ready(mod_name)
        if module is None:
            if mod_name in sys.modules:
                return False  # still executing
            continue  # not in this Python
        cls = getattr(module, cls_name, None)
        if (
            isinstance(cls, type)
            and (attr in cls.__dict__ or attr in _INHERITED)
            and (cls, attr) not in _originals
        ):
            return False
    for wait_module, wait_cls, wait_attr, _op in _WAITS:
        ready, wait_code = _wait_code(wait_module, wait_cls, wait_attr)
        if wait_module in sys.modules and not ready:
            return False  # still executing
        if wait_code is not None and wait_code not in CODES:
            return False
    package = sys.modules.get("asyncio")
    for mod_name, name, _ in _FUNCTIONS:
        if (_ready(mod_name), name) not in _originals:
            return False
        if name in _PUBLIC and not hasattr(getattr(package, name, None), "_dw_original"):
            return False
    return True


def patch() -> None:
    """Track asyncio now if the program has imported it, else as it does."""
    global active
    active = True
    try:
        after_each_import("asyncio", _install)
        when_imported("uvloop", _install_uvloop)
        if "asyncio" in sys.modules:
            _install()
            _adopt_running_loop()
    except BaseException:
        unpatch()
        raise


def _install_uvloop(module: Any) -> None:
    """uvloop's ``Loop``: its ``run_forever`` is inherited from its base in C
    (which ``run_until_complete`` calls through the instance), so the
    patched one is set on ``uvloop.Loop``, the Python class that
    ``uvloop.new_event_loop`` and ``uvloop.run`` make, and taken off again
    by `unpatch`."""
    cls, attr = getattr(module, "Loop", None), "run_forever"
    if not active or not isinstance(cls, type) or (cls, attr) in _originals:
        return
    original = getattr(cls, attr, None)
    if original is None or attr in cls.__dict__:
        return  # not the uvloop this was written for
    try:
        replacement = _run_forever(original)
        replacement._dw_original = original
        setattr(cls, attr, replacement)
    except (TypeError, AttributeError):
        return  # a class in C after all: its loops stay unwatched, as before
    _originals[(cls, attr)] = original
    _added.add((cls, attr))


def _adopt_running_loop() -> None:
    """Enabled from inside a running loop (whose ``run_forever`` began
    unpatched): note it in `loops` as ``run_forever`` would have, in
    `adopted` too, so that the watcher forgets it once it stops (a later run
    is noted by the patched ``run_forever``)."""
    events = sys.modules.get("asyncio.events")
    running = getattr(events, "_get_running_loop", None)
    loop = running() if running is not None else None
    if loop is not None and loop not in loops:
        loops[loop] = _native.get_ident()
        adopted[loop] = None


def unpatch() -> None:
    global active, _current_task
    active = False
    forget(_install)
    _restore()
    _current_task = None
    loops.clear()
    adopted.clear()
    waiting.clear()
    CODES.clear()
    held.clear()


def _restore() -> None:
    # The package re-exports asyncio.tasks' function as patched when it binds
    # it after the patch (``from .tasks import *``): put back as well.
    package = sys.modules.get("asyncio")
    for name in _PUBLIC:
        original = getattr(getattr(package, name, None), "_dw_original", None)
        if original is not None:
            setattr(package, name, original)
    for (cls, attr), original in list(_originals.items()):
        current = cls.__dict__.get(attr)
        if getattr(current, "_dw_original", None) is original:
            if (cls, attr) in _added:
                delattr(cls, attr)  # inherited again
            else:
                setattr(cls, attr, original)
        _added.discard((cls, attr))
        del _originals[(cls, attr)]
