"""Who can reach an object: the threads that could signal an Event, notify a
Condition, fill or drain a queue, complete a future.

Run by the watcher only, on the objects blocked threads wait for, never on
the hot path.  Two steps:

1. Backwards from the objects (``gc.get_referrers``, one scan of the heap per
   level) to what holds them, up to the roots: a module global or a class
   attribute (every thread can reach those), a ``threading.Thread`` object
   (its target and arguments belong to that thread), or an object that is
   alive though nothing the collector sees holds it, nor any thread's locals
   (a signal handler, an atexit entry, C code) — every thread again.  The
   frames of running threads are not followed (on 3.11+ a running frame
   hides its locals from the collector: they are read in step 2), nor are
   tracebacks (the frames they keep have finished); a suspended generator's
   frame is, to whoever holds the generator.
2. For each thread, the locals of each of its frames that the rest of their
   function may still load (`_liveness`): a thread reaches the objects if one
   of those holds an object found in step 1, or if step 1 ended at its own
   ``Thread`` object.

The walk is bounded in levels, objects and time; past a bound the objects
count as reachable by every thread (``complete`` is False).

For an asyncio signal (`_watch.tasks`) the walk is also told which objects
hold what the event loop may still run (``watch``: its tasks that can run,
its ready and scheduled callbacks, its servers, transports, readers and
signal handlers): those found on the way up hold the signal.  The loop
itself is a dead end (``stop``): it holds all of them, and its thread runs
them, which is what they are asked for one by one.
"""

from __future__ import annotations

import contextvars
import gc
import os
import sys
import time
import types
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from deadlockwatch._track import loopread as _loopread
from deadlockwatch._track import state as _state
from deadlockwatch._track.primitives import PURE_LOCK, PURE_RLOCK, TrackedLock, TrackedRLock
from deadlockwatch._watch import liveness as _liveness

MAX_LEVELS = 32
MAX_OBJECTS = 50_000
MAX_SECONDS = 0.5

#: A Thread's (and a Timer's) own callable and arguments: that thread's alone.
_THREAD_OWN = ("_target", "_args", "_kwargs", "function", "args", "kwargs")


@dataclass
class Reach:
    """How a set of objects can be reached."""

    #: Thread ident -> how it reaches them ("local 'ev' of main() at app.py:12").
    threads: dict[int, str] = field(default_factory=dict)
    #: Ways every thread can reach them ("the module global 'READY' of app").
    shared: list[str] = field(default_factory=list)
    #: The global and attribute names those ways go through.
    names: set[str] = field(default_factory=set)
    #: Ways a thread that can run reaches them though it is in no snapshot:
    #: a Python signal handler (run by the main thread), a thread starting.
    rescues: list[str] = field(default_factory=list)
    #: False: a bound was hit; treat them as reachable by every thread.
    complete: bool = True
    #: The indexes in ``watch`` (`reach`) of the objects found holding them.
    watched: list[int] = field(default_factory=list)
    #: Pending tasks of running loops whose coroutines hold them, by id:
    #: (their loop's thread, their name).  `givers` makes each a giver.
    tasks: dict[int, tuple[int, str]] = field(default_factory=dict)

    def givers(self, nodes: Mapping[int, Any]) -> list[tuple[int, str]]:
        """``threads``, and for each task of ``tasks``: itself, if it is
        among ``nodes`` (by key: a task in a tracked wait, a node of the
        graph: it gives the signal once it runs again); else its loop's
        thread, which runs it."""
        out = list(self.threads.items())
        for key, (thread, name) in self.tasks.items():
            if key in nodes:
                out.append((key, f"task {name!r}, whose coroutine holds it"))
            elif thread not in self.threads:
                out.append((thread, f"task {name!r} of its event loop"))
        return out


def _starting() -> dict[int, Any]:
    """Threads started but not running Python yet (threading's ``_limbo``),
    by the id of their Thread object."""
    threading = sys.modules.get("threading")
    try:
        return {id(t): t for t in list(getattr(threading, "_limbo", {}).values())}
    except Exception:
        return {}


def _thread_objects() -> dict[int, Any]:
    threading = sys.modules.get("threading")
    if threading is None:
        return {}
    out: dict[int, Any] = {}
    for table in ("_active", "_limbo"):
        try:
            items = list(getattr(threading, table, {}).values())
        except Exception:
            continue
        for t in items:
            ident = getattr(t, "_ident", None)
            if ident is not None:
                out.setdefault(ident, t)
    return out


_TRACKED_LOCKS = (TrackedLock, TrackedRLock, PURE_LOCK, PURE_RLOCK)

_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _ours(obj: Any) -> bool:
    """deadlockwatch's own bookkeeping (views, records) and its tracked Lock
    and RLock (which name ``_thread`` as their module, as the raw ones do):
    not a way for the application to reach anything."""
    module = getattr(type(obj), "__module__", "") or ""
    return module.startswith("deadlockwatch") or isinstance(obj, _TRACKED_LOCKS)


def _key_of(container: Any, child_ids: set[int]) -> str | None:
    """The key of dict ``container`` that holds one of ``child_ids``."""
    try:
        for k, v in list(container.items()):
            if id(v) in child_ids:
                return str(k)
    except Exception:
        return None
    return None


def _stack(top: FrameType | None) -> list[FrameType]:
    out = []
    f = top
    while f is not None:
        out.append(f)
        f = f.f_back
    return out


def reach(
    targets: Iterable[Any],
    frames: Mapping[int, FrameType],
    *,
    max_levels: int = MAX_LEVELS,
    max_objects: int = MAX_OBJECTS,
    max_seconds: float = MAX_SECONDS,
    stop: Iterable[Any] = (),
    watch: tuple[Any, ...] = (),
    hidden: Mapping[int, list[Any]] | None = None,
) -> Reach:
    """How the threads of ``frames`` (ident -> innermost frame) can reach
    any of ``targets``; which of ``watch`` hold one of them (not through a
    global, nor through ``stop``, whose holders are not followed).
    ``hidden``: holders the collector does not report, by the id of what
    they hold (3.10 and 3.11's C futures' first callback)."""
    hidden = hidden or {}
    out = Reach()
    given = targets
    targets = list(given)
    stacks = {ident: _stack(top) for ident, top in frames.items()}
    # Each frame's locals, read once: on 3.10-3.12 reading them fills a dict
    # that the frame keeps, which must not count as a holder.
    local_values: dict[int, list[tuple[FrameType, Any]]] = {}
    mine: set[int] = set()
    for ident, stack in stacks.items():
        pairs = []
        for f in stack:
            try:
                values = f.f_locals
            except Exception:
                continue
            if values is f.f_globals:
                continue
            if isinstance(values, dict):
                mine.add(id(values))
            pairs.append((f, values))
        local_values[ident] = pairs
    # Every thread's, this one's too (on 3.10 a running frame is an object
    # the collector sees).
    on_stacks = {id(f) for top in sys._current_frames().values() for f in _stack(top)}
    in_frames = {
        id(v) for pairs in local_values.values() for _, values in pairs for v in _values(values)
    }
    ancestors: dict[int, Any] = {id(t): t for t in targets}
    target_ids = set(ancestors)
    #: For a dict among the ancestors: the key that leads to the targets.
    keys: dict[int, str] = {}
    threads = _thread_objects()
    by_object = {id(t): ident for ident, t in threads.items()}
    starting = _starting()
    modules = {id(m.__dict__): m for m in list(sys.modules.values()) if m is not None}
    deadline = time.monotonic() + max_seconds
    frontier = list(targets)
    mine |= {id(ancestors), id(targets), id(given), id(threads), id(modules), id(local_values)}
    mine |= {id(watch), id(hidden), *(id(v) for v in hidden.values())}
    dead_ends = {id(o) for o in stop}
    watched = {id(o) for o in watch}
    # threading's tables of live threads are how it finds them, not the application.
    threading = sys.modules.get("threading")
    mine |= {id(getattr(threading, n, None)) for n in ("_active", "_limbo")}
    task_type = _task_type()
    #: Tasks found through their coroutine: id -> (task, its loop's thread).
    by_coroutine: dict[int, tuple[Any, int]] = {}
    mine.add(id(by_coroutine))
    level = 0
    try:
        while frontier:
            level += 1
            if level > max_levels or time.monotonic() > deadline:
                out.complete = False
                break
            front_ids = {id(o) for o in frontier}
            args = tuple(frontier)  # passed as is: the call's own tuple refers to them all
            found = gc.get_referrers(*args)
            seen: set[int] = set()
            _unreported(frontier, hidden, found, seen)
            # The walk's own containers: neither holders nor ways to reach.
            walking = {id(frontier), id(args), id(found), id(ancestors), id(keys)}
            del args
            nxt: list[Any] = []
            for r in found:
                rid = id(r)
                if rid in walking:
                    continue
                held = [x for x in gc.get_referents(r) if id(x) in front_ids]
                seen.update(id(x) for x in held)
                if rid in mine or rid in dead_ends:
                    continue
                if rid in ancestors or rid in on_stacks or isinstance(r, _DEAD_ENDS):
                    continue  # running frames: step 2; modules: through their __dict__
                if _ours(r) or (isinstance(r, types.MethodType) and id(r.__self__) in by_object):
                    continue  # our records; a thread's own bound run()
                if rid not in watched and _keeps_a_context(r, held, task_type):
                    continue  # see there
                if isinstance(r, dict) and rid in modules:
                    name = getattr(modules[rid], "__name__", "?")
                    if not name.startswith("deadlockwatch"):
                        key = _key_of(r, front_ids) or "?"
                        out.shared.append(f"the module global {key!r} of {name}")
                        out.names.add(key)
                    continue
                if isinstance(r, type):
                    inner = [x for x in gc.get_referents(r) if id(x) in keys]
                    attr = keys[id(inner[0])] if inner else "?"
                    out.shared.append(f"the class attribute {r.__qualname__}.{attr}")
                    out.names.add(attr)
                    continue
                if rid in by_object or rid in starting:
                    if rid in by_object:
                        out.threads.setdefault(by_object[rid], "its own Thread object")
                    else:
                        name = getattr(starting[rid], "_name", "?")
                        out.rescues.append(
                            f"thread {name!r}, which is starting, through its own Thread object"
                        )
                    attrs = getattr(r, "__dict__", None)
                    via = keys.get(id(attrs)) if id(attrs) in front_ids else None
                    if via is None and isinstance(attrs, dict):
                        via = _key_of(attrs, front_ids)
                    if via is None or via in _THREAD_OWN:
                        continue  # its target and arguments are that thread's alone
                if isinstance(r, dict):
                    dict_key = _key_of(r, front_ids)
                    if dict_key is not None:
                        keys[rid] = dict_key
                if task_type is not None and isinstance(r, task_type):
                    loop_thread = _running_task_thread(r)
                    if loop_thread is not None:
                        # Run by its loop's thread alone; who holds it (a
                        # frame, a gather's callback) can cancel it, not
                        # reach into its coroutine: no ancestor.  Through
                        # its coroutine only: if a live local of its await
                        # chain has it (decided once the walk is done).
                        if _through_coroutine(r, held):
                            by_coroutine[rid] = (r, loop_thread)
                        else:  # a done callback of its, say
                            out.tasks[rid] = (loop_thread, _loopread.task_name(r))
                        continue
                ancestors[rid] = r
                if rid in watched:
                    continue  # found: what holds it is the loop's machinery
                nxt.append(r)
                if len(ancestors) > max_objects:
                    out.complete = False
                    return out
            for obj in frontier:
                if (
                    id(obj) not in seen
                    and id(obj) not in in_frames
                    and id(obj) not in by_object
                    and id(obj) not in starting
                    and _held_beyond_walk(obj, id(obj) in target_ids)
                    and not _with_exit(obj, target_ids)
                ):
                    # Alive, yet nothing the collector sees holds it, nor any
                    # thread's locals: C code does (a signal handler, atexit).
                    out.shared.append(f"{_describe(obj)} held where deadlockwatch cannot see")
            frontier = nxt
            del found
        _handlers(out, ancestors)
        for rid, (task, loop_thread) in by_coroutine.items():
            if _frame_reach([(f, _f_locals(f)) for f in _task_frames(task)], ancestors):
                out.tasks[rid] = (loop_thread, _loopread.task_name(task))
        out.watched = [i for i, o in enumerate(watch) if id(o) in ancestors or id(o) in out.tasks]
        for ident, pairs in local_values.items():
            if ident not in out.threads:
                how = _frame_reach(pairs, ancestors)
                if how:
                    out.threads[ident] = how
        return out
    finally:
        ancestors.clear()
        by_coroutine.clear()
        frontier = []


def _unreported(
    frontier: list[Any], hidden: Mapping[int, list[Any]], found: list[Any], seen: set[int]
) -> None:
    """Add to ``found`` the holders of ``frontier``'s objects that the
    collector does not report: their weak references (whoever has one can
    call it: an object handing its thread ``weakref.ref(self)``) and
    ``hidden``'s.  A function of its own: no list of them outlives it, to be
    found holding them at the next level."""
    for o in frontier:
        try:
            refs = weakref.getweakrefs(o)
        except Exception:
            refs = []
        extra = hidden.get(id(o))
        if refs or extra:
            seen.add(id(o))
            found.extend(refs)
            found.extend(extra or ())


def _task_type() -> tuple[type, ...] | None:
    """asyncio's Task classes (Python's and C's), if asyncio is imported."""
    tasks = sys.modules.get("asyncio.tasks")
    base = getattr(tasks, "_PyTask", None)
    if base is None:
        return None
    return (base, getattr(tasks, "_CTask", base))


def _coro(task: Any) -> Any:
    try:
        return task.get_coro()
    except Exception:
        return None


def _through_coroutine(task: Any, held: list[Any]) -> bool:
    """Does ``task`` hold what it holds of the walk's frontier (``held``)
    only as its coroutine?  (A function of its own: a generator expression
    in `reach` would keep the coroutine in a cell of its running frame,
    where the collector cannot see, and the next level would find it held
    there: "a cell held where deadlockwatch cannot see".)"""
    coro = _coro(task)
    return bool(held) and all(x is coro for x in held)


def _task_frames(task: Any) -> list[FrameType]:
    """The suspended frames of ``task``'s await chain (``cr_await``)."""
    out: list[FrameType] = []
    coro = _coro(task)
    while coro is not None and len(out) < 64:
        f = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if f is not None:
            out.append(f)
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return out


def _f_locals(f: FrameType) -> Any:
    try:
        return f.f_locals
    except Exception:
        return {}


def _running_task_thread(task: Any) -> int | None:
    """The thread running the loop of ``task``, if it is pending and its loop runs."""
    try:
        if task.done():
            return None
        return _loopread.loop_thread(task.get_loop())
    except Exception:
        return None


def _with_exit(obj: Any, target_ids: set[int]) -> bool:
    """A ``with`` block's bound ``__exit__``, kept on its frame's value stack
    (where the collector cannot see), which only ever calls it: it gives no
    other way to its object.  Unless the object is what is waited for and
    its exit is what ends the wait (a semaphore's or a lock's release)."""
    if not isinstance(obj, types.MethodType) or obj.__name__ not in ("__exit__", "__aexit__"):
        return False
    owner = obj.__self__
    if id(owner) not in target_ids:
        return True
    threading = sys.modules.get("threading")
    return threading is not None and isinstance(owner, threading.Condition)


def _held_beyond_walk(obj: Any, target: bool) -> bool:
    """Does anything hold ``obj`` besides the walk?  The walk holds it in the
    frontier list, the ancestors dict and its loop variable (and a target in
    two more lists); ``getrefcount`` adds its argument.  An object found at one
    level may have been dropped by its holder since (another thread's
    temporary): then only the walk holds it."""
    try:
        return sys.getrefcount(obj) > 4 + (2 if target else 0)
    except Exception:
        return True


def _values(values: Any) -> list[Any]:
    try:
        return list(values.values())
    except Exception:
        return []


def _describe(obj: Any) -> str:
    name = getattr(obj, "__qualname__", None)
    if isinstance(name, str):
        return f"{type(obj).__name__} {name!r}"
    return f"a {type(obj).__name__}"


def python_handlers() -> list[tuple[str, Any]]:
    """The Python-level signal handlers installed: (signal name, handler)."""
    signal = sys.modules.get("signal")
    if signal is None:
        return []
    out = []
    try:
        for sig in signal.valid_signals():
            try:
                handler = signal.getsignal(sig)
            except (ValueError, OSError):
                continue
            if callable(handler):
                out.append((signal.Signals(sig).name, handler))
    except Exception:
        return out
    return out


def _handlers(out: Reach, ancestors: Mapping[int, Any]) -> None:
    for name, handler in python_handlers():
        if id(handler) in ancestors:
            out.rescues.append(f"the handler of {name}")
            return


def _frame_reach(pairs: list[tuple[FrameType, Any]], ancestors: Mapping[int, Any]) -> str:
    """How a thread's live locals reach one of ``ancestors``, or ""."""
    for f, values in pairs:
        code = f.f_code
        if os.path.abspath(code.co_filename).startswith(_PACKAGE):
            continue
        for name in _liveness.locals_after(code, f.f_lasti):
            try:
                value = values.get(name, _MISSING)
            except Exception:
                return "a frame it could not read"
            if value is not _MISSING and id(value) in ancestors:
                return f"the local {name!r} of {code.co_name}() at {_state.frame_site(f)}"
    return ""


_MISSING = object()
#: Referrers not followed: a module is reached through its ``__dict__``; a
#: traceback keeps frames that have finished, whose locals no code uses.
_DEAD_ENDS = (types.ModuleType, types.TracebackType)


def _keeps_a_context(r: Any, held: list[Any], task_type: tuple[type, ...] | None) -> bool:
    """``r`` holds only `contextvars.Context` objects of the walk, and is no
    way into them.  Code gets at a context's variables by running in it: a
    task (its ``_context``, `reach`'s rule for tasks), a callback the loop
    can run (a handle: one of ``watch``), ``ctx.run`` or a callable holding
    it, a frame whose locals have it.  What merely keeps one is not: a
    future's done callback entry ``(callback, context)`` or a C future's
    first one (kept in the future itself), ``asyncio.Runner``'s, a dict.
    Followed up, the future a task waits on in an asyncio.Lock led to the
    Lock's module global, and the Runner to the loop's thread: a Condition
    that asgiref keeps in a stuck task's context, notified by that task
    alone, counted as reachable by every thread.  (A context kept in an
    object to be run in later, ``self.ctx.run(f)``, is missed: the thread
    doing so is not counted.)"""
    if not held or not all(type(x) is contextvars.Context for x in held):
        return False
    if task_type is not None and isinstance(r, task_type):
        return False
    return not (callable(r) or isinstance(r, types.FrameType))


def names_in_stack(top: FrameType | None, names: set[str]) -> str:
    """Where a frame of the stack names one of ``names`` (a global or an
    attribute the rest of its code may load), or ""."""
    f = top
    while f is not None:
        code = f.f_code
        hit = names.intersection(_liveness.names_after(code, f.f_lasti))
        if hit:
            return f"{code.co_name}() at {_state.frame_site(f)} names {sorted(hit)[0]!r}"
        f = f.f_back
    return ""
