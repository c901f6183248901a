"""From live bookkeeping to a plain `Snapshot`, and stacks for the threads of a finding.

A capture starts from the waits in progress and follows what they wait for
to its holders, so its cost follows the number of blocked threads, not the
number of locks or threads.  It reads other threads' records without any
lock: every read is of one attribute or a copy of one list or dict, and the
watcher confirms a finding on a second capture before believing it.
"""

from __future__ import annotations

import linecache
import os
import re
import sys
import threading
from collections.abc import Iterable, Mapping
from dataclasses import replace
from types import FrameType
from typing import Any

from deadlockwatch._analysis import deadlock as _analysis
from deadlockwatch._model import (
    LOCK_KIND,
    SIGNAL_KIND,
    HeldInfo,
    ReachInfo,
    ResourceInfo,
    Site,
    Snapshot,
    ThreadInfo,
    WaitInfo,
)
from deadlockwatch._track import aio as _aio
from deadlockwatch._track import native as _native
from deadlockwatch._track import state as _state
from deadlockwatch._track import views as _views
from deadlockwatch._track.aio import AioWait
from deadlockwatch._track.state import ThreadRecord, Tracked, WaitRecord, stack_of

_state.internal_file(__file__)

#: How long a reachability answer is reused for the same waits (`_Builder._reach`).
REACH_CACHE_SECONDS = 1.0
#: The reachability walks' share of the watcher's time: after a walk that
#: took d seconds, the next one waits until d / REACH_SHARE have passed.
REACH_SHARE = 0.1
_next_walk = 0.0
_REACH_CACHE: dict[tuple[int, frozenset[tuple[int, float]]], tuple[float, ReachInfo]] = {}


def _remember(key: int, waits: frozenset[tuple[int, float]], now: float, info: ReachInfo) -> None:
    if len(_REACH_CACHE) > 256:
        _REACH_CACHE.clear()
    _REACH_CACHE[(key, waits)] = (now, info)


#: `_Builder.task_reach` has no entry: a thread's signal, walked here.
_NOT_A_TASK_SIGNAL: Any = object()


class _Builder:
    """Turns thread records into `ThreadInfo` and the primitives they touch into
    `ResourceInfo`, following holders of waited-for resources when asked."""

    def __init__(self, frames: Mapping[int, FrameType], budget: bool = True) -> None:
        self.frames = frames
        #: Keep the reachability walks within their share of time.
        self.budget = budget
        self.now = _native.monotonic()
        self.threads: dict[int, ThreadInfo] = {}
        self.resources: dict[int, ResourceInfo] = {}
        self.self_waiting: set[int] = set()
        self.pending: list[ThreadRecord] = []
        #: Records made up for threads that hold or run something but never
        #: touched a tracked primitive (a pool's idle worker, say).
        self.stand_ins: dict[int, ThreadRecord] = {}
        #: Each resource's live object, for working out who can reach it.
        self.live: dict[int, Tracked] = {}
        #: asyncio signals (`_watch.tasks`): who can give each, worked out
        #: from the loop (None: the loop could not be read; left unknown).
        #: Used, as the heap walk is for threads, only where it matters.
        self.task_reach: dict[int, Any] = {}
        #: asyncio tasks that threads wait for (``run_coroutine_threadsafe``'s
        #: ``.result()``), by id: `_watch.tasks` makes them nodes.
        self.task_holders: dict[int, Any] = {}

    def record_for(self, holder: ThreadRecord | int) -> ThreadRecord:
        if isinstance(holder, ThreadRecord):
            return holder
        rec = _state.records.get(holder) or self.stand_ins.get(holder)
        if rec is None:
            rec = ThreadRecord(holder, _state.thread_name(holder, f"thread-{holder}"))
            self.stand_ins[holder] = rec
        return rec

    def add(self, rec: ThreadRecord) -> None:
        if id(rec) in self.threads:
            return
        wait = rec.wait
        if wait is not None and (wait.woken() or wait.interrupt is not None):
            # Notified, or given its DeadlockError (raised at its next slice):
            # it runs as soon as it has the GIL, and unwinds.
            wait = None
        held_objects = list(rec.held)
        counts: dict[int, int] = {}
        objs: dict[int, Tracked] = {}
        for obj in held_objects:
            counts[id(obj)] = counts.get(id(obj), 0) + 1
            objs[id(obj)] = obj
        wait_info = None
        waited: list[int] = []
        res: Any = None
        if wait is not None:
            res = wait.resource
            polled = wait.polled_since
            wait_info = WaitInfo(
                resource=_key(res),
                blocked_for=max(0.0, self.now - (wait.since if polled is None else polled)),
                timeout=wait.timeout,
                site=wait.site,
                token=id(wait) if polled is None else hash((rec.ident, _key(res), polled)),
                polling=polled is not None,
            )
            if wait.self_wait and not getattr(res, "_ctx", True):
                self.self_waiting.add(_key(res))
        elif rec.alive and rec.ident in self.frames:
            # Blocked importing a module another thread is importing?
            lock = _views.import_wait(rec.ident)
            if lock is not None:
                res = _views.ImportView(lock)
                wait_info = WaitInfo(
                    resource=_key(res),
                    blocked_for=0.0,
                    site=_import_site(self.frames.get(rec.ident)),
                    token=hash((id(lock), rec.ident)),
                )
        if res is not None:
            for obj in [res, *getattr(res, "_dw_parts", list)()]:
                objs[_key(obj)] = obj
                waited.append(_key(obj))
        held_sites: dict[int, Site | None] = {}
        for key, obj in objs.items():
            self.live.setdefault(key, obj)
            task = _task_holder(obj)
            if task is not None:
                # Completed by a task of its loop: that task is what it waits for.
                self.task_holders[id(task)] = task
                if key not in self.resources:
                    info = _resource_info(key, obj, [])
                    self.resources[key] = replace(
                        info, holders=((id(task), 1),), owner_bound=True, detail="running in a task"
                    )
                continue
            holders = [(self.record_for(r), n, site) for r, n, site in obj._dw_holders()]
            if key not in self.resources:
                self.resources[key] = _resource_info(key, obj, holders)
                if key in waited:
                    self.pending.extend(r for r, _, _ in holders)
            for r, _, site in holders:
                if r is rec:
                    held_sites[key] = site
        # Renamed since (thread.name = ...)? Remembered for after it ends.  An
        # ended thread's ident may already be another's: keep what it had.
        name = rec.name
        if rec.alive:
            name = rec.name = _state.thread_name(rec.ident, rec.name)
        self.threads[id(rec)] = ThreadInfo(
            key=id(rec),
            ident=rec.ident,
            name=name,
            daemon=_state.thread_daemon(rec.ident, rec.daemon) if rec.alive else rec.daemon,
            alive=rec.alive and rec.ident in self.frames,
            wait=wait_info,
            held=tuple(
                HeldInfo(resource=k, count=n, acquired_at=held_sites.get(k))
                for k, n in counts.items()
            ),
            lost_at_fork=rec.lost_at_fork,
        )

    def add_view(self, obj: Any) -> int:
        """Add the resource seen through view ``obj`` (`_watch.tasks`: a
        task awaiting an executor's future); its holders are followed."""
        key = _key(obj)
        self.live.setdefault(key, obj)
        if key not in self.resources:
            holders = [(self.record_for(r), n, site) for r, n, site in obj._dw_holders()]
            self.resources[key] = _resource_info(key, obj, holders)
            self.pending.extend(r for r, _, _ in holders)
        return key

    def follow(self) -> None:
        while self.pending:
            self.add(self.pending.pop())

    def snapshot(self) -> Snapshot:
        in_snapshot = {t.ident for t in self.threads.values() if t.alive}
        # A thread started but not running Python yet (no frame) can run too.
        others = any(ident not in in_snapshot for ident in self.frames) or _starting()
        if others:
            # A thread blocking on a Lock it took with a bare acquire() may be
            # waiting for another thread to release it (a latch): while other
            # threads exist, that Lock is not owner-bound.
            for key in self.self_waiting:
                r = self.resources[key]
                self.resources[key] = replace(r, owner_bound=False)
        snap = Snapshot(
            threads=self.threads,
            resources=self.resources,
            others_running=others,
            wakeable=self._wakeable(),
            running=frozenset(i for i in self.frames if i not in in_snapshot),
        )
        keys = _analysis.needs_reach(snap)
        return self._with_reach(snap, keys) if keys else snap

    def _with_reach(self, snap: Snapshot, keys: Iterable[int]) -> Snapshot:
        """``snap`` with who can reach each resource of ``keys`` worked out."""
        resources = dict(snap.resources)
        # Timed waits come and go (a heartbeat's): the untimed ones are what
        # stays while threads are stuck.  Each with when it began: a token is
        # a record's id, which a later wait takes over once it is freed.
        waits = frozenset(
            (t.wait.token, round(self.now - t.wait.blocked_for, 6))
            for t in snap.threads.values()
            if t.wait is not None and t.wait.timeout is None
        )
        deferred = False
        for key in keys:
            obj = self.live.get(key)
            if obj is None:
                continue
            job = self.task_reach.get(key, _NOT_A_TASK_SIGNAL)
            if job is None or isinstance(job, ReachInfo):
                if job is not None:
                    resources[key] = replace(resources[key], reach=job)
                continue
            info = self._reach(key, obj, waits, None if job is _NOT_A_TASK_SIGNAL else job)
            if info is None:
                deferred = True
            else:
                resources[key] = replace(resources[key], reach=info)
        whereabouts = {
            ident: (_state.thread_name(ident, f"thread-{ident}"), _whereabouts(frame))
            for ident, frame in self.frames.items()
        }
        return replace(snap, resources=resources, whereabouts=whereabouts, reach_deferred=deferred)

    def _reach(
        self, key: int, obj: Any, waits: frozenset[tuple[int, float]], job: Any = None
    ) -> ReachInfo | None:
        """Who can reach resource ``obj`` (None: not now, the walks' share of
        time is spent).  The answer is kept for a moment while the same
        threads wait in the same waits (what no thread that can run reaches,
        no such thread can come to reach later: only a global or a thread
        that reaches it can pass it on; the reverse does not hold, a frame
        that reached it may have returned since: without the budget, as at
        the end of a test, it is worked out afresh)."""
        global _next_walk
        cached = _REACH_CACHE.get((key, waits)) if self.budget else None
        if cached is not None and self.now - cached[0] < REACH_CACHE_SECONDS:
            return cached[1]
        if self.budget and _native.monotonic() < _next_walk:
            return None
        target = obj.obj if isinstance(obj, _views.View) else obj
        start = _native.monotonic()
        from deadlockwatch._watch import (
            reach as _reach,  # the walk and bytecode liveness: only when needed
        )

        if job is not None:  # an asyncio signal (`_watch.tasks.LoopSignal`)
            from deadlockwatch._watch import tasks as _tasks

            info = _tasks.reach_of(job, target, self.frames, self.threads)
            _next_walk = _native.monotonic() + (_native.monotonic() - start) * (1 / REACH_SHARE - 1)
            _remember(key, waits, self.now, info)
            return info
        found = _reach.reach([target], self.frames)
        end = _native.monotonic()
        _next_walk = end + (end - start) * (1 / REACH_SHARE - 1)
        named: list[tuple[int, str]] = []
        if found.names:
            for ident, frame in self.frames.items():
                how = _reach.names_in_stack(frame, found.names)
                if how:
                    named.append((ident, how))
        info = ReachInfo(
            threads=tuple(dict(found.givers(self.threads)).items()),
            shared=tuple(dict.fromkeys(found.shared)),
            named_by=tuple(named),
            rescues=tuple(found.rescues),
            complete=found.complete,
        )
        _remember(key, waits, self.now, info)
        return info

    def _wakeable(self) -> frozenset[int]:
        """The main thread, if it waits on a signal and the application has a
        Python signal handler that might give it; and every thread waiting
        for a signal another process can give (a multiprocessing semaphore,
        Event, Condition, a queue's room)."""
        main = threading.main_thread().ident
        out = set()
        for t in self.threads.values():
            r = None if t.wait is None else self.resources.get(t.wait.resource)
            if r is None:
                continue
            remote = r.type.startswith("mp.") and not r.owner_bound
            handler = t.ident == main and r.kind == SIGNAL_KIND and _signal_handlers()
            if remote or handler:
                out.add(t.key)
        return frozenset(out)


def _task_holder(obj: Any) -> Any:
    """For ``run_coroutine_threadsafe``'s future: the task running its
    coroutine, once its loop has made it (None before, and for any other)."""
    if not isinstance(obj, _views.FutureView) or getattr(obj.obj, "_dw_loop", None) is None:
        return None
    from deadlockwatch._watch import tasks as _tasks

    return _tasks.task_running(obj.obj)


def _key(obj: Any) -> int:
    key: int = getattr(obj, "_dw_key", None) or id(obj)
    return key


def _resource_info(
    key: int, obj: Tracked, holders: list[tuple[ThreadRecord, int, Any]]
) -> ResourceInfo:
    def text(name: str) -> str:
        method = getattr(obj, name, None)
        return str(method()) if method is not None else ""

    return ResourceInfo(
        key=key,
        id=hex(getattr(obj, "_dw_id", key)),
        type=obj._dw_type,
        created_at=_views.created_site(obj),
        holders=tuple((id(r), n) for r, n, _ in holders),
        free=obj._dw_free(),
        owner_bound=obj._dw_owner_bound(),
        kind=getattr(obj, "_dw_kind", LOCK_KIND),
        detail=text("_dw_detail"),
        verb=getattr(obj, "_dw_verb", ""),
        title=text("_dw_title"),
        group=text("_dw_group"),
        parts=tuple(_key(p) for p in getattr(obj, "_dw_parts", list)()),
    )


def _starting() -> bool:
    threading_ = sys.modules.get("threading")
    return bool(getattr(threading_, "_limbo", None))


def _whereabouts(frame: FrameType | None) -> str:
    """Where a thread is, in the application's code: ``at app.py:12 in run: t.join(5)``."""
    frame = _state.user_frame(frame) or frame
    if frame is None:
        return "nowhere deadlockwatch can see"
    site = _state.frame_site(frame) or Site(frame.f_code.co_filename, frame.f_lineno or 0, "?")
    code = linecache.getline(frame.f_code.co_filename, frame.f_lineno or 0).strip()
    return f"at {site}" + (f": {code}" if code else "")


def _import_site(frame: FrameType | None) -> Site | None:
    """Where a thread blocked in the import system asked for the import."""
    while frame is not None and frame.f_code.co_filename.startswith("<frozen importlib"):
        frame = frame.f_back
    return _state.frame_site(frame)


#: Handlers that only report or time out a test: they never give a signal.
_PASSIVE_HANDLER_MODULES = ("pytest_timeout", "_pytest", "faulthandler", "deadlockwatch")


def _signal_handlers() -> bool:
    """Has the application installed a Python-level signal handler?"""
    from deadlockwatch._watch.reach import python_handlers

    signal = sys.modules.get("signal")
    default = getattr(signal, "default_int_handler", None)
    return any(
        handler is not default
        and not (getattr(handler, "__module__", "") or "").startswith(_PASSIVE_HANDLER_MODULES)
        for _, handler in python_handlers()
    )


_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _app_frames(exclude: Iterable[int]) -> dict[int, FrameType]:
    """The innermost frame of every live thread but ``exclude`` and
    deadlockwatch's own (the watcher, the threads that log a finding)."""
    frames = _native.current_frames()
    for ident in exclude:
        frames.pop(ident, None)
    for ident, frame in list(frames.items()):
        bottom = frame
        while bottom.f_back is not None:
            bottom = bottom.f_back
        if os.path.abspath(bottom.f_code.co_filename).startswith(_PACKAGE):
            del frames[ident]
    return frames


def capture(
    waits: Iterable[WaitRecord | AioWait], exclude: Iterable[int] = (), budget: bool = True
) -> tuple[Snapshot, dict[int, FrameType]]:
    """Snapshot the given waits, the holders of what they wait for, and so on.

    Waits of asyncio tasks (`AioWait`) make task nodes (`_watch.tasks`).
    Returns the snapshot and the current frame of every live thread (for
    stacks); ``exclude`` names thread idents (the watcher's) that are neither
    reported nor counted as able to run; ``budget=False`` works out who can
    reach a signal whatever the walks have cost lately.
    """
    frames = _app_frames(exclude)
    b = _Builder(frames, budget)
    task_waits: list[Any] = []
    for w in waits:
        if isinstance(w, WaitRecord):
            b.pending.append(w.rec)
        else:
            task_waits.append(w)
    b.follow()
    if task_waits or b.task_holders:
        from deadlockwatch._watch import tasks as _tasks  # asyncio's: only when tasks wait

        _tasks.add(b, task_waits)
        b.follow()  # the threads tasks wait for (executor workers, a blocked loop's thread)
    return b.snapshot(), frames


def capture_departed(
    rec: ThreadRecord, exclude: Iterable[int] = ()
) -> tuple[Snapshot, dict[int, FrameType]]:
    """A thread that has ended, with what it still holds."""
    frames = _app_frames(exclude)
    b = _Builder(frames)
    b.add(rec)
    return b.snapshot(), frames


def capture_all(exclude: Iterable[int] = ()) -> tuple[Snapshot, dict[int, FrameType]]:
    """Every live thread (tracked or not), every asyncio task in a tracked
    wait, and every tracked primitive they touch, for dump()."""
    frames = _app_frames(exclude)
    b = _Builder(frames)
    records = _state.records.copy()
    for ident in frames:
        rec = records.get(ident)
        if rec is None:
            rec = ThreadRecord(ident, _state.thread_name(ident, f"thread-{ident}"))
        b.add(rec)
    b.follow()
    if _aio.active and (_aio.waiting or _aio.loops):
        from deadlockwatch._watch import tasks as _tasks

        _tasks.add(b, _tasks.collect(force=True))  # the tasks in a tracked wait
        b.follow()
    return b.snapshot(), frames


#: A source line that blocks when what it names is busy.
_BLOCKING_LINE = re.compile(r"\.(acquire|wait|wait_for|get|put|join|result)\(|^with\b")


def outside_view(
    frames: Mapping[int, FrameType], known: Iterable[int], limit: int = 20
) -> tuple[str, ...]:
    """Threads not in ``known`` whose innermost frame of the application's
    code sits on a blocking call: likely waiting on an untracked primitive."""
    skip = set(known)
    out: list[str] = []
    for ident, frame in frames.items():
        if ident in skip or frame is None:
            continue
        if frame.f_code.co_filename in _state.INTERNAL_FILES:
            continue  # inside threading/queue/futures: a tracked wait, or idle
        line = linecache.getline(frame.f_code.co_filename, frame.f_lineno or 0).strip()
        if not _BLOCKING_LINE.search(line):
            continue
        name = _state.thread_name(ident, f"thread-{ident}")
        site = _state.frame_site(frame)
        out.append(f"{name!r} at {site}: {line}")
        if len(out) >= limit:
            break
    return tuple(out)


def with_stacks(
    threads: Iterable[ThreadInfo], frames: Mapping[int, FrameType]
) -> tuple[ThreadInfo, ...]:
    return tuple(
        replace(t, stack=stack_of(frames.get(t.ident))) if t.alive and not t.is_task else t
        for t in threads
    )
