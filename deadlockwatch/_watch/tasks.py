"""asyncio tasks as nodes of the wait-for graph (issue 15), read from the
watcher's own thread.

Nothing here runs code on an event loop or in its thread (no
``call_soon_threadsafe``): it reads the loop's queues (``_ready``,
``_scheduled``, its selector's map; uvloop's through the collector:
`_track.loopread`), each task's ``_fut_waiter`` (the future
it is suspended on) and coroutine chain (``cr_await``), and the per-task
records of `deadlockwatch._track.aio`.  Each read is of one attribute or a
copy of one list, as for threads, and a finding is believed only when a
second capture shows the same waits.

A task becomes a `ThreadInfo` (``loop_thread`` set; its key and ident are
``id(task)``) waiting on:

- an ``asyncio.Lock`` (owner-bound, held by the task that took it),
  a Semaphore, an Event, a Condition or a queue's item or room (signals),
  from the records of `_track.aio`;
- another task (``await task``: a join on it) or a ``gather`` (all of its
  children), read from ``_fut_waiter``;
- a plain ``asyncio.Future`` that the task's own code awaits directly
  (``loop.create_future()``, ``shield``'s outer future): a signal
  ("complete"), given by those who hold it or whose done callback reaches it.
  Any other future (a socket's, a sleep's, awaited inside asyncio's own
  code) is not a tracked wait: the task counts as able to run.

Who can give an asyncio signal, for the reduction (`ReachInfo`), worked out
only where it matters (`analysis.needs_reach`: a task in it holds something,
or something waits for it) by `reach_of`, with the threads' heap walk
(`_watch.reach`):

- the tasks of its loop in the snapshot whose coroutine frames hold it
  (else all of them): the graph's edges;
- every other thread whose live locals reach it (it could hand the loop
  ``call_soon_threadsafe(ev.set)``, but only with ``ev``);
- of what the loop can still run (its tasks in no tracked wait, its ready
  and scheduled callbacks, its servers, transports, readers and signal
  handlers: `_candidates`), what holds it: a task whose coroutine has it, a
  callback with it among its arguments or closure, a server whose client
  handler closes over it, a protocol with it in an attribute.  The walk
  stops at the loop (it holds all of them) and at tasks (run by their
  loop's thread alone); 3.10 and 3.11's C futures hide their first
  callback from the collector, and are read (`_first_callbacks`).

What can reach it only through a global is a rescuer where its code names
that global; otherwise, while anything else of the loop can run, the tasks
are only probably stuck (a callback's code may call a helper that names
it).  So a listening server, a heartbeat task, an idle executor worker or a
thread handing the loop callbacks no longer hides a deadlock they cannot
touch (until stop 28 each of them did, on every loop).

A task inside ``asyncio.timeout()`` or ``wait_for()`` waits with a timeout
(cancellation is preemption), and so does what it awaits (cancelling a task
cancels the task or gather it awaits): never part of a deadlock, at most of
a timed cycle.

A task awaiting an executor's job (``run_in_executor``, ``to_thread``,
``wrap_future``) waits for the ``concurrent.futures.Future`` its asyncio
future is chained from (`chained_source`): held by the worker running it,
or, queued in a full executor, by its workers.  A thread waiting on
``run_coroutine_threadsafe(...).result()`` waits for the task running the
coroutine (`task_running`, called by `capture`).  A loop whose thread is
blocked in a tracked wait stops its tasks: each task needed (an owner, an
awaited task, a task a thread waits for) that is in no wait of its own
waits for that thread (a `LOOP_KIND` resource), and nothing of the loop
counts as a rescue.

The ``raise`` actions reach tasks through `_track.aio.interrupt`, the one
call from the watcher that hands a loop code to run, and only to break a
confirmed deadlock.
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import sys
import types
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from deadlockwatch._model import (
    LOCK_KIND,
    LOOP_KIND,
    SIGNAL_KIND,
    Frame,
    HeldInfo,
    ReachInfo,
    ResourceInfo,
    Site,
    ThreadInfo,
    WaitInfo,
)
from deadlockwatch._track import aio as _aio
from deadlockwatch._track import loopread as _loopread
from deadlockwatch._track import native as _native
from deadlockwatch._track import state as _state
from deadlockwatch._track.aio import AioWait
from deadlockwatch._track.views import FutureView

_state.internal_file(__file__)
#: The pytest plugin's source (its guard of an async test).
_GUARD_FILE = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "_pytest_plugin.py"
)

#: (id(task), id(future)) -> the wait made up for a task awaiting a task or a
#: gather: kept while it lasts, so that its token and `reported` do.
_made: dict[tuple[int, int], AioWait] = {}
#: id(task) -> a weak reference to the future it was last seen suspended on
#: in no tracked wait (a socket's, a sleep's): not read off its frames again
#: while it stays on that future.
_plain: dict[int, Any] = {}
_next_scan = 0.0
#: How often the tasks of the running loops are scanned for what they await:
#: every `SCAN_MIN` seconds, or less often when a scan took long (at most a
#: twentieth of the time goes to scans), but at least every `SCAN_EVERY`.
SCAN_EVERY = 0.5
SCAN_MIN = 0.1
MAX_STACK = 64


def _asyncio() -> Any:
    return sys.modules.get("asyncio")


def _loops() -> list[Any]:
    """The running loops: those `_track.aio` saw start (or found running at
    enable()), and those of the tasks holding a Lock (a loop started before
    enable() in another thread)."""
    for loop in list(_aio.adopted):
        if not _running(loop):  # stopped: a later run is noted by run_forever
            _aio.adopted.pop(loop, None)
            if loop not in _aio.adopted:
                _aio.loops.pop(loop, None)
    found = dict.fromkeys(list(_aio.loops))
    for task in [*_aio.waiting, *_aio.held]:
        try:
            found[task.get_loop()] = None
        except Exception:
            continue
    return [loop for loop in found if _running(loop)]


def _running(loop: Any) -> bool:
    return _loop_thread(loop) is not None


_loop_thread = _loopread.loop_thread


def _tasks(asyncio: Any, loop: Any) -> list[Any] | None:
    try:
        return list(asyncio.all_tasks(loop))
    except Exception:  # None: unknown, every signal of the loop counts as givable
        return None


def _gathering(fut: Any) -> bool:
    return type(fut).__name__ == "_GatheringFuture" and isinstance(
        getattr(fut, "_children", None), list
    )


def _is_task(asyncio: Any, fut: Any) -> bool:
    return isinstance(fut, asyncio.Task)


def collect(now: float | None = None, force: bool = False) -> list[AioWait]:
    """The waits of tasks now, found in a scan of the running loops' tasks
    (at most every `SCAN_EVERY` seconds, unless ``force``: the confirming
    capture, `check()`; in between, those of the last scan): a task
    suspended in a tracked wait (`_track.aio.wait_of`, read off its await
    chain and kept in ``_aio.waiting`` while it stays on the same future),
    and one made up for each task awaiting a task, a gather or an
    executor's job."""
    global _next_scan
    asyncio = _asyncio()
    for task, w in list(_aio.waiting.items()):
        # Its loop is closed: the task never runs again.  Forgotten, or
        # the record would keep it (and the watcher) alive for good.
        if _closed(task) and _aio.waiting.get(task) is w:
            _aio.waiting.pop(task, None)
    for task in list(_aio.held):
        # A task ended holding a Lock: its list would keep the Lock, and what
        # waits for it, alive for good.
        try:
            ended = task.done() or _closed(task)
        except Exception:
            ended = True
        if ended:
            _aio.held.pop(task, None)
    if asyncio is None or not _aio.active:
        return list(_aio.waiting.values())
    now = _native.monotonic() if now is None else now
    if not force and now < _next_scan:
        return [*_aio.waiting.values(), *_made.values()]
    seen: set[tuple[int, int]] = set()
    tracked: set[int] = set()
    plain: dict[int, Any] = {}
    for loop in _loops():
        tasks = _tasks(asyncio, loop)
        for task in tasks or ():
            fut = getattr(task, "_fut_waiter", None)
            if fut is None:
                continue
            op = "await"
            if not (_is_task(asyncio, fut) or _gathering(fut)):
                # ``run_in_executor``, ``to_thread``, ``wrap_future``: an
                # asyncio future chained from a concurrent one (noted by
                # `_track.aio`: one attribute read for the other tasks).
                source = getattr(fut, "_dw_source", None)
                by = _aio.completed_by.get(fut) if _aio.completed_by else None
                if by is not None:
                    # A future a known task completes: the task awaits it.
                    key = (id(task), id(by))
                    seen.add(key)
                    old = _made.get(key)
                    if old is None or not _aio.still_in(old, fut):
                        made = _made[key] = AioWait(task, by, None, "await")
                        made.fut = weakref.ref(fut)
                    continue
                if source is None or _concurrent(source) is None:
                    if _read_wait(task, fut, now, plain):
                        tracked.add(id(task))
                    continue
                fut, op = source, "executor"
            key = (id(task), id(fut))
            seen.add(key)
            if key not in _made:
                _made[key] = AioWait(task, fut, None, op)
    for key in [k for k in _made if k not in seen]:
        del _made[key]
    for task, w in list(_aio.waiting.items()):
        if id(task) not in tracked and _aio.waiting.get(task) is w:
            _aio.waiting.pop(task, None)
    _plain.clear()
    _plain.update(plain)
    took = _native.monotonic() - now
    _next_scan = now + min(SCAN_EVERY, max(SCAN_MIN, 20 * took))
    return [*_aio.waiting.values(), *_made.values()]


def _read_wait(task: Any, fut: Any, now: float, plain: dict[int, Any]) -> bool:
    """Whether ``task``, suspended on ``fut`` (no task, gather nor executor's
    job), is in a tracked wait; its record made the first time it is seen
    on that future, its frames read once per future."""
    w = _aio.waiting.get(task)
    if w is not None and _aio.still_in(w, fut):
        return True
    ref = _plain.get(id(task))
    if ref is not None and ref() is fut:
        plain[id(task)] = ref
        return False
    frames = _frames(task)
    found = _aio.wait_of(task, frames)
    try:
        ref = weakref.ref(fut)
    except TypeError:
        return False
    if found is None and _bare_future(fut, frames):
        found = fut, "future"
    if found is None:
        plain[id(task)] = ref
        return False
    w = AioWait(task, found[0], None, found[1])
    w.since = now
    w.fut = ref
    _aio.waiting[task] = w
    return True


def _bare_future(fut: Any, frames: list[Any]) -> bool:
    """Whether the task awaits ``fut`` itself, in code of its own: a plain
    ``asyncio.Future`` (``loop.create_future()``, ``shield``'s outer one) that
    the innermost frame outside asyncio awaits directly, or hands to
    ``asyncio.wait_for(fut, None)``, which awaits the future it was given.
    Its setter is anyone who holds it (a signal, "complete").  Not a future
    of asyncio's own (a sleep's, a socket's, a stream's: their waits are
    asyncio's, ended by a timer or a file descriptor).  Only ``wait_for``'s
    frame is read for its locals (on 3.10 to 3.12 reading a frame's locals
    leaves the frame a copy of them, which would keep the application's
    objects alive past their ``del``)."""
    asyncio = _asyncio()
    if asyncio is None or type(fut) not in _future_types(asyncio) or not frames:
        return False
    inner = len(frames) - 1
    if frames[inner].f_code.co_name == "__await__" and inner > 0:
        inner -= 1  # the pure-Python Future's __await__ generator
    where = _asyncio_dir(asyncio)
    mine = inner
    while mine >= 0 and frames[mine].f_code.co_filename.startswith(where):
        mine -= 1
    if mine == inner:
        return True
    if mine < 0 or mine + 1 != inner:
        return False
    given = frames[inner]
    if given.f_code.co_name != "wait_for":
        return False
    try:
        return given.f_locals.get("fut") is fut
    except Exception:
        return False


def _future_types(asyncio: Any) -> tuple[type, ...]:
    futures = asyncio.futures
    c = getattr(futures, "_CFuture", None)
    py = getattr(futures, "_PyFuture", None)
    return tuple(t for t in (asyncio.Future, c, py) if isinstance(t, type))


def _asyncio_dir(asyncio: Any) -> str:
    return os.path.dirname(os.path.abspath(str(asyncio.__file__))) + os.sep


def chained_source(callbacks: Any) -> Any:
    """The future another was chained from by ``asyncio.futures._chain_future``
    (``wrap_future``, ``run_in_executor``, ``run_coroutine_threadsafe``),
    read off the destination's done callbacks: its ``_call_check_cancel``
    closes over ``source`` (the same from 3.10 to 3.14).  None if not chained.
    ``callbacks``: an asyncio future's ``_callbacks`` ((callback, context)
    pairs) or a concurrent one's ``_done_callbacks``."""
    try:
        entries = list(callbacks or ())
    except Exception:
        return None
    for entry in entries:
        fn = entry[0] if isinstance(entry, tuple) and entry else entry
        code = getattr(fn, "__code__", None)
        if code is None or code.co_name != "_call_check_cancel":
            continue
        if getattr(fn, "__module__", "") != "asyncio.futures":
            continue
        try:
            cell = fn.__closure__[code.co_freevars.index("source")]
            return cell.cell_contents
        except (ValueError, IndexError, TypeError, AttributeError):
            continue
    return None


def _concurrent(fut: Any) -> Any:
    """``fut`` if it is a ``concurrent.futures.Future``, else None."""
    futures = sys.modules.get("concurrent.futures")
    cls = getattr(futures, "Future", None)
    return fut if cls is not None and isinstance(fut, cls) else None


def task_running(future: Any) -> Any:
    """The task that will complete ``future`` (``run_coroutine_threadsafe``'s),
    once its loop has made it; None before, or when done."""
    asyncio = _asyncio()
    if asyncio is None:
        return None
    task = chained_source(getattr(future, "_done_callbacks", None))
    if not isinstance(task, asyncio.Task):
        return None
    try:
        return None if task.done() else task
    except Exception:
        return None


def _closed(task: Any) -> bool:
    # What BaseEventLoop.is_closed() reads (no call into the loop: see _running).
    try:
        return bool(getattr(task.get_loop(), "_closed", False))
    except Exception:
        return False


_name = _loopread.task_name


def _frames(task: Any) -> list[Any]:
    """The frames of a task's await chain, outermost first (a coroutine's
    ``cr_await`` to the next, as far as coroutines and generators go)."""
    out: list[Any] = []
    try:
        coro = task.get_coro()
    except Exception:
        return []
    while coro is not None and len(out) < MAX_STACK:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is None:
            break
        out.append(frame)
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return out


def await_chain(task: Any) -> tuple[Frame, ...]:
    """The task's await chain for a report, outermost first, without
    deadlockwatch's (and asyncio's) frames at its innermost end, nor
    deadlockwatch's at its outermost (the pytest plugin's guard of an async
    test)."""
    out = [_state.code_frame(f.f_code, f.f_lineno or 0) for f in _frames(task)]
    while out and out[-1].file in _state.INTERNAL_FILES:
        out.pop()
    while out and out[0].file in _state.INTERNAL_FILES:
        del out[0]
    # Nor the pytest plugin's guard anywhere (under anyio's runner, whose
    # frame is outermost, it is not at the end).
    return tuple(f for f in out if f.file != _GUARD_FILE)


def _timed(loop: Any) -> dict[int, float]:
    """id(task) -> seconds left, for the tasks a pending timeout will cancel:
    ``asyncio.timeout()`` (3.11+; ``wait_for`` on 3.12+), ``wait_for`` on
    3.10/3.11 (a timer that releases the outer task, which then cancels the
    inner one), and what those await: cancelling a task cancels the task or
    ``gather`` it awaits, and a gather its children."""
    out: dict[int, float] = {}
    now = _native.monotonic()  # the loops' time (asyncio's and uvloop's), without calling them
    pending = _loopread.pending(loop)
    if pending is None:
        return _spread(_timed_by_frames(loop, now), out)
    todo: list[tuple[Any, float]] = []
    waiters: dict[int, float] = {}
    tasks: dict[int, Any] | None = None
    for h in pending:
        cb = h.callback
        left = max(0.0, h.when - now)
        owner = getattr(cb, "__self__", None)
        task = getattr(owner, "_task", None)
        if type(owner).__name__ == "Timeout" and task is not None:
            todo.append((task, left))
        elif getattr(cb, "__name__", "") == "_release_waiter":
            if h.args:
                waiters[id(h.args[0])] = left
        elif not getattr(cb, "_dw_own", False):
            # Any other timer that refers to a task may cancel it: its
            # callback's object (``call_later(d, task.cancel)``, anyio's
            # cancel scope with a deadline, whose ``_host_task`` it is), its
            # arguments, its closure.
            if tasks is None:
                tasks = {id(t): t for t in _tasks(_asyncio(), loop) or ()}
            todo.extend((t, left) for t in _tasks_referred(cb, h.args, tasks))
    if waiters:
        for task in _tasks(_asyncio(), loop) or ():
            left_ = waiters.get(id(getattr(task, "_fut_waiter", None)))
            if left_ is None:
                continue
            todo.append((task, left_))
            for f in _frames(task):
                if f.f_code.co_name == "wait_for":
                    inner = _local(f, "fut")
                    if inner is not None:
                        todo.append((inner, left_))
    return _spread(todo, out)


def _spread(todo: list[tuple[Any, float]], out: dict[int, float]) -> dict[int, float]:
    """``out`` with each task of ``todo`` and what it awaits (a task, a gather
    and its children), each with the least time left of those cancelling it."""
    while todo:
        obj, left = todo.pop()
        if id(obj) in out and out[id(obj)] <= left:
            continue
        out[id(obj)] = left
        below = getattr(obj, "_fut_waiter", None)
        if below is not None:
            todo.append((below, left))
        todo.extend((child, left) for child in list(getattr(obj, "_children", None) or ()))
    return out


def _tasks_referred(cb: Any, args: tuple[Any, ...], tasks: Mapping[int, Any]) -> list[Any]:
    """The tasks of ``tasks`` a timer's callback (called with ``args``)
    refers to: itself a task's bound method, or through its object,
    arguments, closure or partial, and one container further (a cancel
    scope's set of tasks)."""
    first: list[Any] = [getattr(cb, "__self__", None), *args]
    for cell in getattr(cb, "__closure__", None) or ():
        with contextlib.suppress(ValueError):
            first.append(cell.cell_contents)
    first.extend([getattr(cb, "func", None), *(getattr(cb, "args", ()) or ())])
    found: dict[int, Any] = {}
    for obj in first:
        if obj is None:
            continue
        if id(obj) in tasks:
            found[id(obj)] = obj
            continue
        for ref in gc.get_referents(obj):
            if id(ref) in tasks:
                found[id(ref)] = ref
            elif isinstance(ref, (set, frozenset, list, tuple, dict)) and len(ref) <= _MAX_SCAN:
                try:  # copied first: the loop's thread may change it meanwhile
                    inner_all = list(ref.values() if isinstance(ref, dict) else ref)
                except RuntimeError:  # changed size while copied
                    continue
                for inner in inner_all:
                    if id(inner) in tasks:
                        found[id(inner)] = inner
    return list(found.values())


#: The largest container a timer's callback holds that `_tasks_referred` looks into.
_MAX_SCAN = 1000


def _timed_by_frames(loop: Any, now: float) -> list[tuple[Any, float]]:
    """The tasks a timeout will cancel, read off their await chains, for a
    loop whose timers cannot be read (`_loopread.pending`): a task whose chain
    has an ``asyncio.timeout()`` entered (3.11+: its ``__aexit__`` is on the
    stack of the coroutine inside the ``async with``), or runs asyncio's
    ``wait_for`` (on 3.10/3.11 its inner future too: it is cancelled with
    the outer task) or ``wait`` with a timeout.  Time left: the Timeout's
    deadline; for ``wait_for`` on 3.10/3.11 and ``wait``, its whole
    ``timeout`` (an upper bound)."""
    asyncio = _asyncio()
    timeouts = sys.modules.get("asyncio.timeouts")
    timeout_type = getattr(timeouts, "Timeout", None)
    out: list[tuple[Any, float]] = []
    if asyncio is None:
        return out
    home = _asyncio_dir(asyncio)
    for task in _tasks(asyncio, loop) or ():
        for coro in _coros(task):
            frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
            if frame is None:
                continue
            code = frame.f_code
            if code.co_name == "wait_for" and code.co_filename.startswith(home):
                seconds = _local(frame, "timeout")
                left = float(seconds) if isinstance(seconds, (int, float)) else 0.0
                out.append((task, max(0.0, left)))
                inner = _local(frame, "fut")
                if inner is not None:
                    out.append((inner, max(0.0, left)))
            elif code.co_name == "_wait" and code.co_filename.startswith(home):
                # asyncio.wait(fs, timeout=...): its timer releases the task.
                seconds = _local(frame, "timeout")
                if isinstance(seconds, (int, float)):
                    out.append((task, max(0.0, float(seconds))))
            # A ``with`` block's ``__exit__`` is on the stack: the coroutine's
            # on 3.11+, its frame's on 3.10.
            for ref in (*gc.get_referents(coro), *gc.get_referents(frame)):
                cm = getattr(ref, "__self__", None) if isinstance(ref, types.MethodType) else None
                if cm is None:
                    continue
                # asyncio.timeout()'s Timeout; anyio's cancel scope with a
                # deadline (``fail_after``, ``move_on_after``), on its stack as
                # a ``with`` block's ``__exit__``.
                timeout = timeout_type is not None and isinstance(cm, timeout_type)
                when = getattr(cm, "_when", None) if timeout else None
                if when is None and type(cm).__module__.startswith("anyio."):
                    when = getattr(cm, "_deadline", None)
                if isinstance(when, (int, float)) and when != math.inf:
                    out.append((task, max(0.0, float(when) - now)))
    return out


def _coros(task: Any) -> list[Any]:
    """The coroutines (and generators) of a task's await chain, outermost first."""
    out: list[Any] = []
    try:
        coro = task.get_coro()
    except Exception:
        return out
    while coro is not None and len(out) < MAX_STACK:
        out.append(coro)
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return out


def _local(frame: Any, name: str) -> Any:
    try:
        return frame.f_locals.get(name)
    except Exception:
        return None


@dataclass(frozen=True)
class LoopSignal:
    """Who can give a signal a task of ``loop`` waits for, to be worked out
    (`reach_of`) only where it matters (`analysis.needs_reach`)."""

    loop: Any
    #: The loop's thread: it runs what ``objects`` hold, and nothing else.
    thread: int
    #: Tasks of the loop in the snapshot that could give it (graph edges).
    givers: tuple[tuple[int, str], ...]
    #: What on the loop can still run, in words; the objects holding what
    #: each runs, and for each object the index of its words.
    labels: tuple[str, ...]
    objects: tuple[Any, ...]
    owners: tuple[int, ...]
    #: Tasks of the loop in the snapshot, for the names their code loads.
    tasks: tuple[Any, ...]


def _candidates(loop: Any, runnable: list[Any]) -> list[tuple[str, tuple[Any, ...]]] | None:
    """What on ``loop`` can still run and might give a signal: each in
    words, with the objects that hold what it runs (the task; a handle with
    its callback and arguments, which outlive it when a timer schedules
    itself again; the server, the transport, the poll); None when the loop
    cannot be read (`_loopread.activity`)."""
    seen = _loopread.activity(loop)
    if seen is None:
        return None
    out: list[tuple[str, tuple[Any, ...]]] = [
        (f"task {_name(t)!r}, which can run", (t,)) for t in runnable
    ]
    for h in seen.ready:
        out.append(
            (
                f"a callback ready to run on the loop ({_callback_name(h)})",
                (h, *_loopread.handle_parts(h)),
            )
        )
    for t in seen.timers:
        out.append(
            (
                f"a callback scheduled on the loop ({_describe_call(t.callback)})",
                (t.handle, t.callback, t.args),
            )
        )
    for obj in seen.io:
        out.append((f"{_io_name(obj)} watched by the loop", (obj,)))
    for h in seen.signal_handlers:
        out.append(
            (
                f"a signal handler of the loop ({_callback_name(h)})",
                (h, *_loopread.handle_parts(h)),
            )
        )
    return out


def _describe_call(fn: Any) -> str:
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    if not isinstance(name, str):
        inner = getattr(fn, "func", None)  # functools.partial
        return _describe_call(inner) if inner is not None else type(fn).__name__
    return f"{name}()"


def _callback_name(handle: Any) -> str:
    cb = getattr(handle, "_callback", None)
    if cb is None:
        with contextlib.suppress(Exception):
            cb = _loopread._uv_ready_callback(handle)
    return _describe_call(cb) if cb is not None else type(handle).__name__


def _io_name(obj: Any) -> str:
    kind = type(obj).__name__
    if kind in ("Handle", "TimerHandle"):
        return f"a reader or writer ({_callback_name(obj)})"
    if "Server" in kind:
        return f"a server ({kind})"
    if "Poll" in kind:
        return "a reader or writer (add_reader)"
    if "Process" in kind:
        return f"a subprocess ({kind})"
    return f"a transport ({kind})"


def reach_of(
    job: LoopSignal, target: Any, frames: Mapping[int, Any], nodes: Mapping[int, Any]
) -> ReachInfo:
    """Who can give ``target``, a signal tasks of ``job.loop`` wait for: the
    tasks of ``job.givers``; the other threads whose live locals reach it
    (`_watch.reach`; a thread could hand the loop ``call_soon_threadsafe(ev.set)``,
    but only if it has ``ev``); and of what the loop can still run, what
    holds it (a task whose coroutine has it, a callback with it among its
    arguments, a server whose client handler closes over it, a protocol
    with it in an attribute).  What reaches it only through a global counts
    where its code names that global (a task's, from where it is
    suspended on; a callback's, a protocol's or a handler's, anywhere in
    its functions): else it is at most a probable rescuer (`ReachInfo.shared`)."""
    from deadlockwatch._watch import reach as _reach

    hidden = _first_callbacks()
    hidden.update(_gather_dicts())
    try:
        found = _reach.reach([target], frames, stop=(job.loop,), watch=job.objects, hidden=hidden)
    finally:
        hidden.clear()
    threads = [*job.givers]
    threads += [(i, how) for i, how in found.givers(nodes) if i != job.thread]
    holding = sorted({job.owners[i] for i in found.watched})
    rescues = [*found.rescues, *(job.labels[i] for i in holding)]
    named: list[tuple[int, str]] = []
    if found.names:
        for i, label in enumerate(job.labels):
            if i in holding:
                continue
            group = [o for o, owner in zip(job.objects, job.owners, strict=True) if owner == i]
            hit = next(filter(None, (_names(o, found.names, job.loop) for o in group)), "")
            if hit:
                rescues.append(f"{label}: its code names {hit!r}")
        for task in job.tasks:
            how = _task_names(task, found.names)
            if how:
                named.append((id(task), how))
        for ident, frame in frames.items():
            if ident != job.thread:
                how = _reach.names_in_stack(frame, found.names)
                if how:
                    named.append((ident, how))
    return ReachInfo(
        threads=tuple(threads),
        shared=tuple(dict.fromkeys(found.shared)),
        named_by=tuple(named),
        rescues=tuple(rescues),
        complete=found.complete,
        loop_thread=job.thread,
        loop_busy=job.labels,
    )


def _first_callbacks() -> dict[int, list[Any]]:
    """3.10 and 3.11: a C future's (and task's) first done callback and its
    context, which the collector does not report it holds (its traverse
    leaves them out; 3.12 mended it), by their ids: for a task, the
    ``gather`` or ``wait`` callback that leads to its parent, for a future,
    the task it wakes.  Found among every object the collector tracks (one
    pass over the heap, as one level of the walk) and read through the
    future's ``_callbacks`` getter, in C."""
    if sys.version_info >= (3, 12):
        return {}
    base = getattr(sys.modules.get("_asyncio"), "Future", None)
    if base is None:
        return {}
    out: dict[int, list[Any]] = {}
    objects = gc.get_objects()
    try:
        for o in objects:
            if not isinstance(o, base):
                continue
            with contextlib.suppress(Exception):
                entries = o._callbacks
                if entries:
                    for held in entries[0]:
                        out.setdefault(id(held), []).append(o)
    finally:
        del objects
    return out


def _gather_dicts() -> dict[int, list[Any]]:
    """3.13+: a ``gather``'s outer future's attribute dict (its ``_children``),
    which the collector does not report the future holds (``_asyncio.Future``
    keeps a managed dict its traverse leaves out), by the dict's id.  Without
    it, a future gathered was reachable only through "a dict held where
    deadlockwatch cannot see", and so by every thread.  Found by matching each
    gathering future's ``_children`` (read as an attribute: its dict cannot
    be asked for) with a dict that has it, in one pass over the heap."""
    if sys.version_info < (3, 13):
        return {}
    gathering = getattr(sys.modules.get("asyncio.tasks"), "_GatheringFuture", None)
    if not isinstance(gathering, type):
        return {}
    outers: dict[int, Any] = {}
    dicts: dict[int, dict[str, Any]] = {}
    objects = gc.get_objects()
    try:
        for o in objects:
            if type(o) is gathering:
                children = getattr(o, "_children", None)
                if children is not None:
                    outers[id(children)] = o
            elif type(o) is dict and "_children" in o:
                dicts[id(o.get("_children"))] = o
    finally:
        del objects
    return {
        id(d): [outers[key]]
        for key, d in dicts.items()
        if key in outers and d.get("_children") is getattr(outers[key], "_children", None)
    }


def _task_names(task: Any, names: set[str]) -> str:
    """Where a coroutine of ``task``'s await chain names one of ``names`` in
    the rest of its code, or ""."""
    from deadlockwatch._watch import liveness as _liveness

    for f in _frames(task):
        with contextlib.suppress(Exception):
            hit = names.intersection(_liveness.names_after(f.f_code, f.f_lasti))
            if hit:
                return f"{f.f_code.co_name}() at {_state.frame_site(f)} names {sorted(hit)[0]!r}"
    return ""


#: Types whose functions are asyncio's, uvloop's or Python's own: not
#: followed for the names the application's code loads.
_LIBRARY = ("builtins", "asyncio", "_asyncio", "uvloop", "deadlockwatch", "collections", "weakref")
_NAMES_MAX = 400


def _names(obj: Any, names: set[str], loop: Any) -> str:
    """The first of ``names`` (globals and attributes a signal is reached
    through) that code ``obj`` may run loads: the functions it holds, a few
    references deep (a handle's callback and arguments, a server's protocol
    factory and the client handler it closes over, a protocol's class), and
    the code objects nested in theirs.  Reads references only (the
    collector's and functions' attributes), runs nothing.  Not through
    ``loop``: it holds every callback."""
    todo: list[tuple[Any, int]] = [(obj, 0)]
    seen: set[int] = {id(loop)}
    while todo and len(seen) < _NAMES_MAX:
        o, depth = todo.pop()
        if id(o) in seen:
            continue
        seen.add(id(o))
        if isinstance(o, types.CodeType):
            hit = _code_names(o, names)
            if hit:
                return hit
            continue
        if depth >= 5 or isinstance(o, (types.ModuleType, types.FrameType)):
            continue
        with contextlib.suppress(Exception):
            todo.extend((x, depth + 1) for x in _followed(o))
    return ""


def _followed(o: Any) -> list[Any]:
    if isinstance(o, types.FunctionType):
        return [
            o.__code__,
            *(c.cell_contents for c in o.__closure__ or ()),
            *(o.__defaults__ or ()),
        ]
    if isinstance(o, types.MethodType):
        return [o.__func__, o.__self__]
    if isinstance(o, type):
        if str(o.__module__).startswith(_LIBRARY):
            return []
        return [
            v
            for k in o.__mro__
            for v in list(vars(k).values())
            if isinstance(v, types.FunctionType)
        ]
    if type(o) is dict and "__builtins__" in o:
        return []  # a module's globals
    # An instance's referents include its class (the application's: its
    # methods are what it runs).
    return list(gc.get_referents(o))


def _code_names(code: types.CodeType, names: set[str]) -> str:
    hit = names.intersection(code.co_names)
    if hit:
        return sorted(hit)[0]
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            inner = _code_names(c, names)
            if inner:
                return inner
    return ""


def _key(obj: Any, op: str = "") -> int:
    # A queue's three waits (an item, room, its tasks done) are three
    # resources: id + 1 and id + 2 are inside the object, never another's id.
    return id(obj) + {"put": 1, "join": 2}.get(op, 0)


def _label_type(obj: Any) -> str:
    return f"asyncio.{type(obj).__name__}"


def _created(obj: Any) -> Any:
    return _state.site_at(_aio.mark(obj, "_dw_created"))


def add(b: Any, waits: Iterable[AioWait]) -> None:
    """Add the tasks of ``waits`` (and what they wait for, and its holders)
    to the capture ``b`` (a `capture._Builder`)."""
    asyncio = _asyncio()
    waits = list(waits)
    holders = list(b.task_holders.values())
    if asyncio is None or not (waits or holders):
        return
    by_loop: dict[Any, list[AioWait]] = {}
    for task in holders:  # tasks that threads wait for (run_coroutine_threadsafe)
        with contextlib.suppress(Exception):
            by_loop.setdefault(task.get_loop(), [])
    for w in waits:
        try:
            loop = w.task.get_loop()
        except Exception:
            continue
        by_loop.setdefault(loop, []).append(w)
    for loop, loop_waits in by_loop.items():
        if _running(loop):
            _add_loop(b, asyncio, loop, loop_waits)


def _woken(task: Any) -> bool:
    """The task will run at its turn (or has finished)."""
    try:
        if task.done():
            return True
        fut = task._fut_waiter
        return fut is None or bool(fut.done()) or bool(getattr(task, "_must_cancel", False))
    except Exception:
        return True


def _add_loop(b: Any, asyncio: Any, loop: Any, waits: list[AioWait]) -> None:
    thread_ident = _loop_thread(loop)
    if thread_ident is None:
        return  # it stopped since
    thread = _state.thread_name(thread_ident, f"thread-{thread_ident}")
    where = f"{thread!r} (ident {thread_ident})"
    timed = _timed(loop)
    nodes: dict[int, tuple[Any, AioWait]] = {}
    for w in waits:
        if _woken(w.task):
            continue
        if w.op == "await" and w.fut is None and w.task._fut_waiter is not w.resource:
            continue  # awaits something else by now
        if not _aio.still_in(w, w.task._fut_waiter):
            continue  # read off its frames, and no longer on that future
        if w.op == "executor":
            fut = w.task._fut_waiter
            if chained_source(getattr(fut, "_callbacks", None)) is not w.resource:
                continue
            if not FutureView(w.resource)._dw_owner_bound():
                continue  # not queued behind busy workers, nor running: it will run
        nodes[id(w.task)] = (w.task, w)
    tasks = _tasks(asyncio, loop)
    runnable = [t for t in tasks or () if id(t) not in nodes and not t.done()]
    candidates = None if tasks is None else _candidates(loop, runnable)

    # What each waits for.
    held: dict[int, list[HeldInfo]] = {}
    infos: dict[int, ResourceInfo] = {}
    signals: list[int] = []
    #: Tasks that hold or finish something waited for (owners, awaited tasks).
    needed: dict[int, Any] = {}

    def signal_info(obj: Any, op: str, k: int) -> ResourceInfo:
        """A signal (an Event, a queue's item or room, a plain future...):
        whoever holds it may give it (`_watch.reach`, where it matters)."""
        free, verb, detail = _signal_state(asyncio, obj, op)
        if k not in signals:
            signals.append(k)
        b.live.setdefault(k, obj)
        return ResourceInfo(
            key=k,
            id=hex(id(obj)),
            type=_label_type(obj),
            created_at=_created(obj),
            free=free,
            owner_bound=False,
            kind=SIGNAL_KIND,
            verb=verb,
            detail=detail,
        )

    def join_info(fut: Any) -> ResourceInfo:
        k = id(fut)
        if _is_task(asyncio, fut):
            done = bool(fut.done())
            needed[id(fut)] = fut
            return ResourceInfo(
                key=k,
                id=hex(k),
                type="asyncio.Task",
                created_at=None,
                holders=() if done else ((id(fut), 1),),
                free=1 if done else 0,
                kind="join",
                title=f"Task {_name(fut)!r}",
            )
        if (
            not _gathering(fut)
            and type(fut) in _future_types(asyncio)
            and getattr(fut, "_dw_source", None) is None
            and chained_source(getattr(fut, "_callbacks", None)) is None
        ):
            # A plain future gathered (``gather(fut)``, not an executor's
            # job): a signal, as when awaited itself, that whoever holds it
            # may complete.
            return signal_info(fut, "future", _key(fut, "future"))
        children = list(getattr(fut, "_children", []))
        parts = [join_info(c) for c in children]
        for p in parts:
            infos.setdefault(p.key, p)
        done = bool(fut.done())
        return ResourceInfo(
            key=k,
            id=hex(k),
            type="asyncio.gather",
            created_at=None,
            free=1 if done else 0,
            kind="all",
            title=f"gather() of {', '.join(repr(_name(c)) for c in children)}",
            parts=tuple(p.key for p in parts),
        )

    def many_info(obj: Any, op: str) -> ResourceInfo:
        """``asyncio.wait(fs)`` (any or all of them) or a TaskGroup's exit (all
        its tasks).  A member that is no task nor gather (a future set by
        hand) is unknown: a wait for any counts as ending."""
        members = list(obj._tasks) if op == "group" else list(obj)
        known = [f for f in members if _is_task(asyncio, f) or _gathering(f)]
        unknown = any(not f.done() for f in members if f not in known)
        parts = [join_info(f) for f in known]
        for p in parts:
            infos.setdefault(p.key, p)
        kind = "any" if op == "wait-any" else "all"
        names = ", ".join(repr(_name(f)) for f in known if _is_task(asyncio, f))
        what = "TaskGroup" if op == "group" else f"asyncio.wait() for {kind} of"
        return ResourceInfo(
            key=id(obj),
            id=hex(id(obj)),
            type="asyncio.TaskGroup" if op == "group" else "asyncio.wait",
            created_at=None,
            free=1 if (unknown and kind == "any") or not parts else 0,
            kind=kind,
            title=f"{what} {names}" if names else what,
            parts=tuple(p.key for p in parts),
        )

    for _, w in list(nodes.values()):
        obj = w.resource
        k = _key(obj, w.op)
        if k in infos:
            continue
        locks = asyncio.locks
        if w.op == "await":
            infos[k] = join_info(obj)
        elif w.op in ("group", "wait-any", "wait-all"):
            infos[k] = many_info(obj, w.op)
        elif w.op == "executor":
            b.add_view(FutureView(obj))  # held by the executor's workers
        elif isinstance(obj, locks.Lock):
            owner = _aio.mark(obj, "_dw_owner")
            locked = bool(obj.locked())
            if locked and owner is not None:
                needed[id(owner)] = owner
                held.setdefault(id(owner), []).append(
                    HeldInfo(k, 1, _state.site_at(_aio.mark(obj, "_dw_taken")))
                )
            infos[k] = ResourceInfo(
                key=k,
                id=hex(id(obj)),
                type="asyncio.Lock",
                created_at=_created(obj),
                holders=((id(owner), 1),) if locked and owner is not None else (),
                free=0 if locked else 1,
                owner_bound=not _aio.mark(obj, "_dw_shared", False),
                kind=LOCK_KIND,
            )
        else:
            infos[k] = signal_info(obj, w.op, k)

    # Tasks awaited, or holding a lock awaited, that wait on nothing tracked
    # are left out: they count as able to run.
    def node(task: Any, w: AioWait | None) -> ThreadInfo:
        left = timed.get(id(task))
        wait = None
        stack = await_chain(task)
        if w is not None:
            site = _state.site_at(w.site)
            if site is None and stack:  # an await read off the task: its innermost frame
                site = Site(stack[-1].file, stack[-1].line, stack[-1].function)
            wait = WaitInfo(
                resource=_key(w.resource, w.op),
                blocked_for=max(0.0, b.now - w.since),
                timeout=left,
                site=site,
                token=id(w),
            )
        return ThreadInfo(
            key=id(task),
            ident=id(task),
            name=_name(task),
            daemon=False,
            alive=True,
            wait=wait,
            held=tuple(held.get(id(task), ())),
            stack=stack,
            loop_thread=where,
        )

    for task, w in nodes.values():
        b.threads[id(task)] = node(task, w)
    for k, r in infos.items():
        b.resources.setdefault(k, r)
    _held_by_tasks(b, thread_ident, nodes)

    # The loop's thread blocked in a tracked wait (a threading Lock, a
    # ``.result()``): no task of the loop runs, nor any of its callbacks,
    # until it returns.  Each task needed and not in a wait of its own waits
    # for that thread.
    stopped = _stopped_by(b, thread_ident)
    if stopped is not None:
        for t in list(b.task_holders.values()):
            with contextlib.suppress(Exception):
                if t.get_loop() is loop:
                    needed.setdefault(id(t), t)
        loop_key = id(loop)
        b.resources.setdefault(
            loop_key,
            ResourceInfo(
                key=loop_key,
                id=hex(loop_key),
                type="asyncio event loop",
                created_at=None,
                holders=((id(stopped), 1),),
                free=0,
                owner_bound=True,
                kind=LOOP_KIND,
                title=f"the event loop of thread {thread!r}",
            ),
        )
        b.pending.append(stopped)
        for k, task in needed.items():
            if k in b.threads or _done(task):
                continue
            info = node(task, None)
            wait = WaitInfo(
                resource=loop_key,
                blocked_for=max(0.0, b.now - stopped.wait.since) if stopped.wait else 0.0,
                site=Site(info.stack[-1].file, info.stack[-1].line, info.stack[-1].function)
                if info.stack
                else None,
                token=hash((k, loop_key, id(stopped.wait))),
            )
            b.threads[k] = replace(info, wait=wait)

    for k in signals:
        holding = tuple(
            (id(t), "a task of its loop, whose coroutine holds it")
            for t, _ in nodes.values()
            if any(_holds(f, b.live[k]) for f in _frames(t)) or _sets_when_done(t, b.live[k])
        )
        givers = holding or tuple((id(t), "a task of its loop") for t, _ in nodes.values())
        # Used only where it matters (`analysis.needs_reach`, as for threads):
        # a lone task awaiting a stop Event, holding nothing, blocks nobody.
        if stopped is not None:
            b.task_reach[k] = ReachInfo(
                threads=(*givers, (thread_ident, "the loop's thread, once it returns to the loop"))
            )
        elif candidates is None:
            b.task_reach[k] = None  # the loop cannot be read: unknown
        else:
            b.task_reach[k] = LoopSignal(
                loop=loop,
                thread=thread_ident,
                givers=givers,
                labels=tuple(label for label, _ in candidates),
                objects=tuple(o for _, group in candidates for o in group),
                owners=tuple(i for i, (_, group) in enumerate(candidates) for _ in group),
                tasks=tuple(t for t, _ in nodes.values()),
            )


def _held_by_tasks(b: Any, ident: int, nodes: Mapping[int, tuple[Any, AioWait]]) -> None:
    """threading Locks the loop's thread ``ident`` holds for a task: taken by
    a coroutine frame of a task that is now suspended in a wait (a Lock held
    across an ``await``: loguru #906), they are that task's, not the
    thread's.  The thread goes back to its loop and runs other tasks; only
    the code that took a Lock releases it, unless the Lock's class is known
    to be handed over (`HANDOFF_SITES`, or this Lock was released by
    another thread), so a thread blocked on it waits for that task, and the
    task, if it waits for that thread (an executor job), closes a cycle.

    The taking frame is the Lock's ``_dw_taker`` (an address) and its code
    the acquisition site's: a frame of the task's await chain at that
    address running that code is the taking call, still running."""
    rec = _state.records.get(ident)
    thread = None if rec is None else b.threads.get(id(rec))
    if thread is None or thread.wait is not None or not thread.held or not nodes:
        return  # a blocked loop thread stops its tasks instead (_stopped_by)
    frames = {id(f): (task, f) for task, _ in nodes.values() for f in _frames(task)}
    kept: list[HeldInfo] = []
    for h in thread.held:
        obj = b.live.get(h.resource)
        owner = _task_taking(obj, rec, frames)
        resource = b.resources.get(h.resource)
        if owner is None or resource is None:
            kept.append(h)
            continue
        task_key = id(owner)
        b.resources[h.resource] = replace(
            resource,
            holders=tuple((task_key if k == id(rec) else k, n) for k, n in resource.holders),
        )
        info = b.threads[task_key]
        b.threads[task_key] = replace(info, held=(*info.held, h))
    if len(kept) != len(thread.held):
        b.threads[id(rec)] = replace(thread, held=tuple(kept))


def _task_taking(obj: Any, rec: Any, frames: Mapping[int, tuple[Any, Any]]) -> Any:
    """The task whose frame (in ``frames``, by address) took ``obj``, a
    tracked Lock ``rec``'s thread holds and never handed over; else None."""
    from deadlockwatch._track.primitives import HANDOFF_SITES

    try:
        if getattr(obj, "_dw_type", None) != "Lock" or obj._owner is not rec:
            return None
        if obj._handoff or obj._created in HANDOFF_SITES:
            return None
        found = frames.get(obj._dw_taker)
        site = obj._site
        if found is None or site is None or found[1].f_code is not site[0]:
            return None
        return found[0]
    except Exception:  # torn down meanwhile: left to the thread
        return None


def _stopped_by(b: Any, ident: int) -> _state.ThreadRecord | None:
    """The record of the loop's thread ``ident`` if it is blocked in a tracked
    wait (not yet woken); else None."""
    rec = _state.records.get(ident)
    wait = None if rec is None else rec.wait
    if rec is None or wait is None or wait.woken() or wait.interrupt is not None:
        return None
    return rec


def _done(task: Any) -> bool:
    try:
        return bool(task.done())
    except Exception:
        return True


def _sets_when_done(task: Any, obj: Any) -> bool:
    """Does a done callback of ``task`` reach ``obj`` (``shield``'s, which
    completes its outer future; ``add_done_callback(lambda t: ev.set())``)?
    Read as the task's frames are: a closure cell, a bound method's
    ``__self__`` or its attributes, a ``functools.partial``'s function and
    arguments."""
    try:
        entries = list(getattr(task, "_callbacks", None) or ())
    except Exception:
        return True
    for entry in entries:
        fn = entry[0] if isinstance(entry, tuple) and entry else entry
        if _refers(fn, obj, 3):
            return True
    return False


def _refers(fn: Any, obj: Any, depth: int) -> bool:
    if fn is obj:
        return True
    if depth == 0:
        return False
    owner = getattr(fn, "__self__", None)
    if owner is obj or (owner is not None and _has(owner, obj)):
        return True
    try:
        cells = getattr(fn, "__closure__", None) or ()
        if any(_refers(c.cell_contents, obj, depth - 1) for c in cells):
            return True
    except ValueError:  # an empty cell
        return False
    inner = getattr(fn, "func", None)
    if inner is not None and callable(inner):
        args = (
            *tuple(getattr(fn, "args", ()) or ()),
            *dict(getattr(fn, "keywords", {}) or {}).values(),
        )
        return _refers(inner, obj, depth - 1) or any(a is obj for a in args)
    return False


def _has(owner: Any, obj: Any) -> bool:
    """Does ``owner`` (a bound method's object: 3.13's ``as_completed``
    iterator, whose ``_done`` queue its done callback fills) hold ``obj`` in
    an attribute?  Read off its referents (its attribute values or
    ``__dict__``), never through ``owner.__dict__``, which would turn its
    inline values into a dict."""
    if isinstance(owner, (types.ModuleType, type)):
        return False
    try:
        refs = gc.get_referents(owner)
        if any(r is obj for r in refs):
            return True
        return any(type(r) is dict and any(v is obj for v in list(r.values())) for r in refs)
    except Exception:
        return False


def _holds(frame: Any, obj: Any) -> bool:
    """Does a local of ``frame`` that the rest of its function may still
    load hold ``obj``?  (A coroutine that made an Event and only awaits its
    tasks now is no giver.)"""
    from deadlockwatch._watch import liveness as _liveness

    try:
        names = _liveness.locals_after(frame.f_code, frame.f_lasti)
        values = frame.f_locals
        return any(values.get(name) is obj for name in names)
    except Exception:
        return True


def _signal_state(asyncio: Any, obj: Any, op: str) -> tuple[int, str, str]:
    """(free units, what a task would do to release a waiter, state in words)."""
    locks = asyncio.locks
    try:
        if op == "future":
            return (1 if obj.done() else 0), "complete", "pending"
        if isinstance(obj, locks.Event):
            return (1 if obj.is_set() else 0), "set", ""
        if isinstance(obj, locks.Condition):
            return 0, "notify", ""
        if isinstance(obj, locks.Semaphore):
            value = int(getattr(obj, "_value", 0))
            return max(value, 0), "release", f"value {value}"
        barrier = getattr(locks, "Barrier", None)
        if barrier is not None and isinstance(obj, barrier):
            return (1 if obj.broken else 0), "reach", f"{obj.n_waiting} of {obj.parties} waiting"
        if isinstance(obj, asyncio.Queue):
            if op == "join":
                n = int(obj._unfinished_tasks)
                return (0 if n else 1), "finish the tasks of", f"{n} unfinished task(s)"
            if op == "put":
                return (0 if obj.full() else 1), "take an item from", f"full, {obj.qsize()} item(s)"
            return (0 if obj.empty() else 1), "put an item into", "empty"
    except Exception:
        return 1, "", ""
    return 1, "", ""
