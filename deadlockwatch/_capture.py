"""From live bookkeeping to a plain `Snapshot`, and stacks for the threads of a finding.

A capture starts from the waits in progress and follows what they wait for
to its holders, so its cost follows the number of blocked threads, not the
number of locks or threads.  It reads other threads' records without any
lock: every read is of one attribute or a copy of one list or dict, and the
watcher confirms a finding on a second capture before believing it.
"""

from __future__ import annotations

import linecache
from collections.abc import Iterable, Mapping
from dataclasses import replace
from types import FrameType
from typing import Any

from . import _native, _state
from ._model import Frame, HeldInfo, ResourceInfo, Site, Snapshot, ThreadInfo, WaitInfo
from ._state import ThreadRecord, WaitRecord

_state.internal_file(__file__)

MAX_STACK = 64


class _Builder:
    """Turns thread records into `ThreadInfo` and the primitives they touch into
    `ResourceInfo`, following holders of waited-for resources when asked."""

    def __init__(self, frames: Mapping[int, FrameType]) -> None:
        self.frames = frames
        self.now = _native.monotonic()
        self.threads: dict[int, ThreadInfo] = {}
        self.resources: dict[int, ResourceInfo] = {}
        self.self_waiting: set[int] = set()
        self.pending: list[ThreadRecord] = []

    def add(self, rec: ThreadRecord) -> None:
        if id(rec) in self.threads:
            return
        wait = rec.wait
        held_objects = list(rec.held)
        counts: dict[int, int] = {}
        objs: dict[int, Any] = {}
        for obj in held_objects:
            counts[id(obj)] = counts.get(id(obj), 0) + 1
            objs[id(obj)] = obj
        wait_info = None
        if wait is not None:
            res = wait.resource
            objs[id(res)] = res
            wait_info = WaitInfo(
                resource=id(res),
                blocked_for=max(0.0, self.now - wait.since),
                timeout=wait.timeout,
                site=wait.site,
                token=id(wait),
            )
            if wait.self_wait and not getattr(res, "_ctx", True):
                self.self_waiting.add(id(res))
        held_sites: dict[int, Site | None] = {}
        for key, obj in objs.items():
            holders = obj._dw_holders()
            if key not in self.resources:
                self.resources[key] = ResourceInfo(
                    key=key,
                    id=hex(key),
                    type=obj._dw_type,
                    created_at=getattr(obj, "_created", None) or getattr(obj, "_dw_created", None),
                    holders=tuple((id(r), n) for r, n, _ in holders),
                    free=obj._dw_free(),
                    owner_bound=obj._dw_owner_bound(),
                )
                if wait is not None and obj is wait.resource:
                    self.pending.extend(r for r, _, _ in holders)
            for r, _, site in holders:
                if r is rec:
                    held_sites[key] = site
        self.threads[id(rec)] = ThreadInfo(
            key=id(rec),
            ident=rec.ident,
            name=_state.thread_name(rec.ident, rec.name),
            daemon=_state.thread_daemon(rec.ident, rec.daemon),
            alive=rec.alive and rec.ident in self.frames,
            wait=wait_info,
            held=tuple(
                HeldInfo(resource=k, count=n, acquired_at=held_sites.get(k))
                for k, n in counts.items()
            ),
        )

    def follow(self) -> None:
        while self.pending:
            self.add(self.pending.pop())

    def snapshot(self) -> Snapshot:
        in_snapshot = {t.ident for t in self.threads.values() if t.alive}
        others = any(ident not in in_snapshot for ident in self.frames)
        if others:
            # A thread blocking on a Lock it took with a bare acquire() may be
            # waiting for another thread to release it (a latch): while other
            # threads exist, that Lock is not owner-bound.
            for key in self.self_waiting:
                r = self.resources[key]
                self.resources[key] = replace(r, owner_bound=False)
        return Snapshot(threads=self.threads, resources=self.resources, others_running=others)


def capture(
    waits: Iterable[WaitRecord], exclude: Iterable[int] = ()
) -> tuple[Snapshot, dict[int, FrameType]]:
    """Snapshot the given waits, the holders of what they wait for, and so on.

    Returns the snapshot and the current frame of every live thread (for
    stacks); ``exclude`` names thread idents (the watcher's) that are neither
    reported nor counted as able to run.
    """
    frames = _native.current_frames()
    for ident in exclude:
        frames.pop(ident, None)
    b = _Builder(frames)
    b.pending.extend(w.rec for w in waits)
    b.follow()
    return b.snapshot(), frames


def capture_all(exclude: Iterable[int] = ()) -> tuple[Snapshot, dict[int, FrameType]]:
    """Every live thread (tracked or not) and every tracked primitive they touch, for dump()."""
    frames = _native.current_frames()
    for ident in exclude:
        frames.pop(ident, None)
    b = _Builder(frames)
    records = _state.records.copy()
    for ident in frames:
        rec = records.get(ident)
        if rec is None:
            rec = ThreadRecord(ident, _state.thread_name(ident, f"thread-{ident}"))
        b.add(rec)
    b.follow()
    return b.snapshot(), frames


def stack_of(frame: FrameType | None) -> tuple[Frame, ...]:
    """A thread's stack, outermost first, without deadlockwatch's own frames on top."""
    out: list[Frame] = []
    f = frame
    while f is not None and len(out) < MAX_STACK:
        code = f.f_code
        line = f.f_lineno or 0
        out.append(
            Frame(
                code.co_filename,
                line,
                code.co_name,
                linecache.getline(code.co_filename, line).strip(),
            )
        )
        f = f.f_back
    while out and out[0].file in _state.INTERNAL_FILES:
        out.pop(0)
    out.reverse()
    return tuple(out)


def with_stacks(
    threads: Iterable[ThreadInfo], frames: Mapping[int, FrameType]
) -> tuple[ThreadInfo, ...]:
    return tuple(replace(t, stack=stack_of(frames.get(t.ident))) if t.alive else t for t in threads)
